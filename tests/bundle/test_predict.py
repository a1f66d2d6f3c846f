"""predict: bundle loading (safely), training's preprocessing, and the CLI's outputs."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main
from PIL import Image

from fishopt import data
from fishopt.bundle import predict
from fishopt.errors import FishoptError


def header_only_png(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: enough for the pixel guard, which must not decode it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))  # one row; the rest is missing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_predict_on_the_test_images_reproduces_the_exported_evaluation(
    exported: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    meta = json.loads((exported["bundle"] / "model.json").read_text())
    listing = data.list_images(data.SourceSpec("kaggle", path=exported["data"]))
    y = np.asarray(listing.labels)
    sp = meta["source"]["split"]
    test_idx = data.split(y, sp["fractions"], seed=sp["seed"]).test
    files = [str(listing.files[i]) for i in test_idx]
    code, out, err = run_main(
        monkeypatch, capsys, "predict", str(exported["bundle"]), *files, "--format", "json"
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["file"] for r in rows] == files
    classes = meta["classes"]
    cm = np.zeros((len(classes), len(classes)), dtype=int)
    for i, r in zip(test_idx, rows, strict=True):
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and len(probs) == 3
        cm[y[i], classes.index(r["top"][0]["class"])] += 1
    assert cm.tolist() == meta["metrics"]["test"]["confusion"]


def test_predict_folder_csv_and_bad_files(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    src = next((exported["data"] / "Trout" / "Trout").glob("*.png"))
    shutil.copy(src, folder / "a.png")
    Image.open(src).convert("RGB").save(folder / "b.jpg", quality=95)
    code, out, _err = run_main(
        monkeypatch, capsys, "predict", str(exported["bundle"]), str(folder),
        "--format", "csv", "--top-k", "2",
    )  # fmt: skip
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "file,rank,class,probability,error"
    assert len(lines) == 1 + 2 * 2
    (folder / "c.png").write_text("not an image")
    code, out, err = run_main(monkeypatch, capsys, "predict", str(exported["bundle"]), str(folder))
    assert code == 1 and "1 of 3 files are not readable images" in err
    code, _out, err = run_main(monkeypatch, capsys, "predict", str(exported["bundle"]), "nowhere")
    assert code == 2 and "nowhere: no such file or folder" in err


def test_probabilities_are_a_distribution_and_top_k_is_sorted(exported: dict) -> None:
    bundle = predict.load_bundle(exported["bundle"])
    files = sorted((exported["data"] / "Shrimp" / "Shrimp").glob("*.png"))[:4]
    X = np.stack([predict.features_of_file(bundle, f) for f in files])
    probs = predict.probabilities(bundle, X)
    assert probs.shape == (4, 9)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    tops = predict.top_k(bundle, probs, 20)  # capped at the number of classes
    for t in tops:
        ps = [p for _, p in t]
        assert len(t) == 9 and ps == sorted(ps, reverse=True)
    # Bytes and files take the same preprocessing path.
    blob = files[0].read_bytes()
    from_bytes = predict.features_of_bytes(bundle, blob, "x.png", predict.DEFAULT_MAX_PIXELS)
    assert np.array_equal(from_bytes, X[0])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_guard_refuses_a_bomb_from_its_header(exported: dict) -> None:
    bundle = predict.load_bundle(exported["bundle"])
    with pytest.raises(predict.ImageRejected, match="over the 50 Mpx limit") as info:
        predict.features_of_bytes(bundle, header_only_png(12_000, 12_000), "bomb.png", 50_000_000)
    assert info.value.status == 413
    with pytest.raises(predict.ImageRejected, match="empty file") as info:
        predict.features_of_bytes(bundle, b"", "e.png", 50_000_000)
    assert info.value.status == 422
    with pytest.raises(predict.ImageRejected, match="not an image") as info:
        predict.features_of_bytes(bundle, b"hello, world", "t.png", 50_000_000)
    assert info.value.status == 415
    buf = io.BytesIO()
    Image.new("L", (590, 445)).save(buf, format="PNG")
    assert predict.features_of_bytes(bundle, buf.getvalue(), "ok.png", 50_000_000).shape == (2655,)


def test_tampered_weights_are_refused_naming_the_file(exported: dict, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(exported["bundle"], copy)
    weights = copy / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(FishoptError, match=r"model\.safetensors: sha256 .* does not match"):
        predict.load_bundle(copy)


def test_missing_model_json_is_refused(exported: dict, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(exported["bundle"], copy)
    (copy / "model.json").unlink()
    with pytest.raises(FishoptError, match=r"model\.json: missing"):
        predict.load_bundle(copy)


class _Trap:
    """Unpickling this creates a file: proof that a pickle was (wrongly) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_pt_pickle_is_refused_and_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "unpickled"
    for name in ("model.pt", "model.pth", "weights.pkl"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(_Trap(marker)))
        with pytest.raises(FishoptError, match="pickle; fishopt never unpickles"):
            predict.load_bundle(path)
    code, _out, err = run_main(monkeypatch, capsys, "predict", str(tmp_path / "model.pt"), ".")
    assert code == 2 and "never unpickles" in err and len(err.strip().splitlines()) == 1
    # A folder holding only a pickle is not a bundle either.
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(tmp_path / "model.pt", folder / "model.pt")
    with pytest.raises(FishoptError, match=r"model\.json: missing"):
        predict.load_bundle(folder)
    assert not marker.exists()
