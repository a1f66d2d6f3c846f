"""The prediction service: a FastAPI app built by ``create_app(bundle)``.

The bundle is loaded (and its weights' sha256 checked) in the app's lifespan, so importing this
module reads nothing. Every bad input gets a JSON error with a status that says what was wrong:

- body over ``max_upload_bytes``: 413, refused as soon as the count passes the limit, whether or
  not the client sent Content-Length (FastAPI/Starlette's per-route ``max_body_size``, which
  counts bytes as they stream in);
- more than ``max_files`` files: 413; an empty file or a missing ``files`` field: 422;
- a file that is not an image: 415; an image over ``max_pixels``: 413, judged from its header
  before any pixel is decoded (a decompression bomb costs only its header).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from fishopt.bundle import predict
from fishopt.bundle.predict import Bundle, ImageRejected

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * MB
    max_files: int = 16
    max_pixels: int = predict.DEFAULT_MAX_PIXELS
    top_k: int = 3


def create_app(bundle: Bundle | Path | str, limits: Limits = Limits()) -> FastAPI:
    """An app serving ``bundle`` (a loaded Bundle, or a folder loaded at startup)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.bundle = bundle if isinstance(bundle, Bundle) else predict.load_bundle(bundle)
        yield

    app = FastAPI(
        title="fishopt prediction service",
        description="Upload fish photos; get the most likely species with probabilities.",
        lifespan=lifespan,
    )

    app.add_middleware(DeclaredSizeGuard, max_bytes=limits.max_upload_bytes, path="/predict")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 413 and detail == "Content Too Large":  # Starlette's streamed count
            detail = (
                f"request body is over the limit of {limits.max_upload_bytes} bytes "
                f"({limits.max_upload_bytes / MB:g} MB); stopped reading it"
            )
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse(
            {"detail": "; ".join(parts) or "invalid request", "errors": jsonable(exc.errors())},
            status_code=422,
        )

    def current(request: Request) -> Bundle:
        return request.app.state.bundle

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    @app.get("/health")
    async def health(request: Request) -> dict:
        b = current(request)
        return {"status": "ok", "model": b.label, "classes": len(b.classes)}

    @app.get("/model")
    async def model(request: Request) -> dict:
        return {**current(request).meta, "limits": asdict(limits)}

    @app.post(
        "/predict",
        max_body_size=limits.max_upload_bytes,
        responses={
            413: {"description": "body, file count or image pixels over the limit"},
            415: {"description": "a file is not an image"},
            422: {"description": "no files, or an empty file"},
        },
    )
    async def predict_route(
        request: Request,
        files: Annotated[list[UploadFile], File(description="one or more images")],
        top_k: Annotated[int, Query(ge=1, le=100)] = limits.top_k,
    ) -> dict:
        """Top-k species per uploaded image, best first."""
        if len(files) > limits.max_files:
            raise HTTPException(
                413, f"{len(files)} files in one request; the limit is {limits.max_files}"
            )
        b = current(request)
        blobs = [(f.filename or f"file {i + 1}", await f.read()) for i, f in enumerate(files)]

        def work() -> list[dict]:
            limit = limits.max_pixels
            X = np.stack([predict.features_of_bytes(b, blob, n, limit) for n, blob in blobs])
            tops = predict.top_k(b, predict.probabilities(b, X), top_k)
            return [
                predict.Prediction(name, top).to_dict()
                for (name, _), top in zip(blobs, tops, strict=True)
            ]

        try:
            results = await run_in_threadpool(work)
        except ImageRejected as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return {"model": b.label, "predictions": results}

    return app


class DeclaredSizeGuard:
    """Answer 413 as JSON from the Content-Length header alone, before any body is read.

    Bodies without Content-Length are counted as they stream by the route's ``max_body_size``;
    this only makes the declared-size case answer in the same JSON shape (Starlette's own
    early answer is plain text).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path: str) -> None:
        self.app, self.max_bytes, self.path = app, max_bytes, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            declared = Headers(scope=scope).get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                detail = (
                    f"request body is {int(declared)} bytes; the limit is {self.max_bytes} "
                    f"({self.max_bytes / MB:g} MB)"
                )
                response = JSONResponse({"detail": detail}, status_code=413)
                response.headers["connection"] = "close"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def jsonable(errors: object) -> object:
    """Validation errors may carry bytes or exceptions; keep what JSON can hold."""
    if isinstance(errors, dict):
        return {k: jsonable(v) for k, v in errors.items() if k != "ctx"}
    if isinstance(errors, list | tuple):
        return [jsonable(v) for v in errors]
    if isinstance(errors, str | int | float | bool) or errors is None:
        return errors
    return str(errors)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fishopt: which fish is this?</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
 table { border-collapse: collapse; margin-top: 1rem; }
 td, th { padding: .25rem .75rem; text-align: left; }
 .bar { background: #3b82f6; height: .8rem; }
 .error { color: #b91c1c; }
 #model { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>Which fish is this?</h1>
<p id="model">loading model...</p>
<form id="upload">
  <input type="file" id="file" name="files" accept="image/*" multiple required>
  <button type="submit" id="go">Predict</button>
</form>
<div id="result" aria-live="polite"></div>
<script>
const result = document.getElementById("result");
fetch("/health").then(r => r.json()).then(h => {
  document.getElementById("model").textContent = `model: ${h.model}, ${h.classes} species`;
});
function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = document.getElementById("file").files;
  if (!files.length) return;
  const body = new FormData();
  for (const f of files) body.append("files", f, f.name);
  result.textContent = "predicting...";
  result.dataset.state = "busy";
  try {
    const response = await fetch("/predict", { method: "POST", body });
    const answer = await response.json();
    result.textContent = "";
    if (!response.ok) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = `error ${response.status}: ${answer.detail}`;
      result.append(p);
      result.dataset.state = "error";
      return;
    }
    for (const item of answer.predictions) {
      const h = document.createElement("h2");
      h.textContent = `${item.file}: ${item.top[0].class}`;
      h.className = "species";
      const table = document.createElement("table");
      for (const t of item.top) {
        const tr = document.createElement("tr");
        const bar = document.createElement("td");
        const fill = document.createElement("div");
        fill.className = "bar";
        fill.style.width = `${Math.round(t.probability * 200)}px`;
        bar.append(fill);
        tr.append(cell(t.class), cell(`${(t.probability * 100).toFixed(1)} %`), bar);
        table.append(tr);
      }
      result.append(h, table);
    }
    result.dataset.state = "done";
  } catch (e) {
    result.textContent = `error: ${e}`;
    result.dataset.state = "error";
  }
});
</script>
</body>
</html>
"""
