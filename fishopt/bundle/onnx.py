"""``model.onnx`` for a bundle, exported only if onnxruntime agrees with torch on test images."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch

from fishopt.errors import FishoptError
from fishopt.training.train import logits_of

ONNX = "model.onnx"
ONNX_TOLERANCE = 1e-4  # max |logit difference| allowed between onnxruntime and torch


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_onnx(model: torch.nn.Module, in_features: int, path: Path, X: torch.Tensor) -> dict:
    """Export to ONNX and check onnxruntime agrees with torch on ``X`` (the test split)."""
    try:
        import onnxruntime as ort
    except ImportError:
        msg = "--onnx needs onnx and onnxruntime: pip install 'fishopt[onnx]'"
        raise FishoptError(msg) from None
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, in_features),),
            str(path),
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = logits_of(model, X).numpy()
    got = session.run(None, {"features": X.numpy().astype(np.float32)})[0]
    diff = float(np.abs(got - expected).max()) if len(X) else 0.0
    agree = int((got.argmax(1) == expected.argmax(1)).sum()) if len(X) else 0
    if diff > ONNX_TOLERANCE or agree != len(X):
        raise FishoptError(
            f"model.onnx disagrees with torch on the test split: max |logit diff| {diff:.2e}, "
            f"{agree}/{len(X)} same class; not exported"
        )
    return {
        "file": ONNX,
        "sha256": sha256_file(path),
        "checked_on": len(X),
        "max_abs_logit_diff": diff,
        "same_class": agree,
        "onnxruntime": ort.__version__,
    }
