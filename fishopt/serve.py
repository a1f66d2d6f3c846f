"""The prediction service: a FastAPI app built by ``create_app(bundle)``.

The bundle is loaded (and its weights' sha256 checked) in the app's lifespan, so importing this
module reads nothing. ``app_from_env`` is the same factory for uvicorn's worker processes
(``fishopt serve --workers N``): each worker reads the bundle folder and limits from the
environment the CLI set, and refuses a tampered bundle before it serves a request.

What the service publishes about the model is ``model.json`` less the study's storage location
(``source.storage``, which names a file path or a database host); the bundle on disk keeps it
for its owner. Every bad input gets a JSON ``{"detail": ...}`` with a status that says what was
wrong, and every one of these answers is declared in the OpenAPI schema:

- body over ``max_upload_bytes``: 413, refused as soon as the count passes the limit, whether or
  not the client sent Content-Length (FastAPI/Starlette's per-route ``max_body_size``, which
  counts bytes as they stream in);
- more than ``max_files`` files: 413; no file, an empty file or a missing ``files`` field: 422;
- a file that is not an image: 415; an image over ``max_pixels``: 413, judged from its header
  before any pixel is decoded (a decompression bomb costs only its header);
- a body that is not multipart/form-data, or a multipart body that does not parse: 400.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from fishopt.bundle import predict
from fishopt.bundle.predict import Bundle, ImageRejected
from fishopt.errors import FishoptError

MB = 1024 * 1024
CARD = "MODEL_CARD.md"

# How `fishopt serve --workers N` hands its settings to uvicorn's worker processes: they are
# spawned fresh and import the app by name, so the environment is the one channel (nothing here
# is a secret: a folder path, numbers).
ENV_BUNDLE = "FISHOPT_SERVE_BUNDLE"
ENV_LIMITS = "FISHOPT_SERVE_LIMITS"
ENV_THREADS = "FISHOPT_SERVE_THREADS"
WORKER_FACTORY = "fishopt.serve:app_from_env"
STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that cannot start: the parent stops too

# Keys of model.json's "source" that stay in the bundle and are never served: where the
# study and its images live on the owner's machines (a database host, a folder path).
PRIVATE_SOURCE_KEYS = frozenset({"storage", "data_source"})


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 10 * MB
    max_files: int = 16
    max_pixels: int = predict.DEFAULT_MAX_PIXELS
    top_k: int = 3


# ---------------------------------------------------------------------- the published contract


class Problem(BaseModel):
    """Every error answer: one readable line, plus the validator's own list for a 422."""

    detail: str
    errors: list[dict[str, Any]] | None = None


class Ranked(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias="class")
    probability: float = Field(ge=0, le=1)


class FilePrediction(BaseModel):
    file: str
    top: list[Ranked]


class PredictAnswer(BaseModel):
    model: str
    predictions: list[FilePrediction]


class Health(BaseModel):
    status: str
    model: str
    classes: int


PROBLEM_REF = "#/components/schemas/Problem"


class MarkdownResponse(PlainTextResponse):
    media_type = "text/markdown"


def problems(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, each answered with a ``Problem``."""
    return {code: {"model": Problem, "description": d} for code, d in described.items()}


def public_meta(meta: dict) -> dict:
    """``model.json`` as the world may see it: without where the study's storage lives."""
    source = {k: v for k, v in meta.get("source", {}).items() if k not in PRIVATE_SOURCE_KEYS}
    return {**meta, "source": source}


# ------------------------------------------------------------------------------------ the app


def create_app(bundle: Bundle | Path | str, limits: Limits = Limits()) -> FastAPI:
    """An app serving ``bundle`` (a loaded Bundle, or a folder loaded at startup)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = bundle if isinstance(bundle, Bundle) else predict.load_bundle(bundle)
        app.state.bundle = loaded
        app.state.public = public_meta(loaded.meta)
        card = loaded.path / CARD
        app.state.card = card.read_text() if card.is_file() else None
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
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        kind = request.headers.get("content-type", "")
        if request.url.path == "/predict" and not kind.lower().startswith("multipart/form-data"):
            # Not a form at all: a wrong request, not a form missing its field (422).
            return JSONResponse(
                {"detail": f"the body is not multipart/form-data (Content-Type: {kind or 'none'})"},
                status_code=400,
            )
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
    async def health(request: Request) -> Health:
        b = current(request)
        return Health(status="ok", model=b.label, classes=len(b.classes))

    @app.get("/model")
    async def model(request: Request) -> dict[str, Any]:
        """``model.json`` (less the study's storage location) and the service's limits."""
        return {**request.app.state.public, "limits": asdict(limits)}

    @app.get(
        "/card",
        response_class=MarkdownResponse,
        responses={
            200: {"description": "the model card"},
            404: {
                "description": "the bundle has no model card",
                "content": {"application/json": {"schema": {"$ref": PROBLEM_REF}}},
            },
        },
    )
    async def card(request: Request) -> MarkdownResponse:
        """The bundle's model card, in Markdown (it never names the study's storage)."""
        text = request.app.state.card
        if text is None:
            raise HTTPException(404, f"the bundle has no {CARD}")
        return MarkdownResponse(text)

    @app.post(
        "/predict",
        max_body_size=limits.max_upload_bytes,
        responses=problems(
            {
                400: "a body that is not valid multipart/form-data",
                413: "body, file count or image pixels over the limit",
                415: "a file is not an image",
                422: "no files, an empty file, or a bad top_k",
            }
        ),
    )
    async def predict_route(
        request: Request,
        files: Annotated[list[UploadFile], File(min_length=1, description="one or more images")],
        top_k: Annotated[int, Query(ge=1, le=100)] = limits.top_k,
    ) -> PredictAnswer:
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
        return PredictAnswer.model_validate({"model": b.label, "predictions": results})

    return app


# ------------------------------------------------------------------- uvicorn worker processes


def worker_env(bundle: Path, limits: Limits, threads: int) -> dict[str, str]:
    """The environment ``app_from_env`` reads in each worker."""
    return {
        ENV_BUNDLE: str(Path(bundle).resolve()),
        ENV_LIMITS: json.dumps(asdict(limits)),
        ENV_THREADS: str(threads),
    }


def app_from_env() -> FastAPI:
    """uvicorn's app factory in a worker process: settings from ``worker_env``.

    The bundle is loaded here, before the worker takes a connection, so a bundle changed after
    the CLI checked it is refused by every worker, with one line on stderr; the exit code tells
    uvicorn's supervisor not to restart the worker but to stop.
    """
    try:
        folder = os.environ[ENV_BUNDLE]
        limits = Limits(**json.loads(os.environ[ENV_LIMITS]))
        threads = int(os.environ[ENV_THREADS])
    except (KeyError, ValueError, TypeError) as exc:
        sys.stderr.write(f"error: worker started without `fishopt serve`'s settings ({exc})\n")
        raise SystemExit(STARTUP_FAILURE) from None
    torch.set_num_threads(threads)
    try:
        loaded = predict.load_bundle(folder)
    except FishoptError as exc:
        sys.stderr.write(f"error: worker {os.getpid()}: {exc}\n")
        raise SystemExit(STARTUP_FAILURE) from None
    return create_app(loaded, limits)


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


# The upload page (drag and drop, one request per file, top-k bars, reasons for refusals).
PAGE = (Path(__file__).parent / "upload.html").read_text(encoding="utf-8")
