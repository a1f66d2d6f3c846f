"""The prediction service, for real: `fishopt serve` processes on 127.0.0.1 (one process, and
`--workers 2`) driven over HTTP, raw sockets for the body-size limits, Schemathesis over the
published OpenAPI schema, and the upload page in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from chromium import Browser
from conftest import run_main
from PIL import Image
from sockets import accepted_by, listening_port

from fishopt import serve

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 2  # the test servers' upload limit (the default, 10 MB, is checked separately)
MAX_FILES = 4


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    proc: subprocess.Popen


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory so far (a freed allocation still counts)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@contextlib.contextmanager
def launch(bundle: Path, *extra: str) -> Iterator[Server]:
    """`fishopt serve BUNDLE` with the test limits, until it answers /health; stopped after.

    ``--port 0``: the kernel picks a free port as the server binds; /proc tells which."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable, "-m", "fishopt.cli", "serve", str(bundle),
        "--host", "127.0.0.1", "--port", "0", "--max-upload-mb", str(LIMIT_MB),
        "--max-files", str(MAX_FILES), "--threads", "1", *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        port = None
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
            port = port or listening_port(proc.pid)
            try:
                if port and httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not answer /health in 180 s")
            time.sleep(0.3)
        yield Server(f"http://127.0.0.1:{port}", port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(exported: dict) -> Iterator[Server]:
    """One process: the tests that watch the serving process's memory need it to be the one."""
    with launch(exported["bundle"]) as s:
        yield s


@pytest.fixture(scope="module")
def workers(exported: dict) -> Iterator[Server]:
    """`--workers 2`: a parent process and two uvicorn worker processes."""
    with launch(exported["bundle"], "--workers", "2", "--max-megapixels", "1") as s:
        yield s


@pytest.fixture(scope="module")
def kaggle_png(exported: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fish photo at the Kaggle set's size, 590x445 RGB PNG."""
    src = sorted((exported["data"] / "Red Mullet" / "Red Mullet").glob("*.png"))[0]
    out = tmp_path_factory.mktemp("photo") / "red-mullet.png"
    Image.open(src).convert("RGB").resize((590, 445), Image.BICUBIC).save(out)
    return out


def post(server: Server, files: list[tuple[str, tuple[str, bytes, str]]]) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", files=files, timeout=60)


# ------------------------------------------------------------------------------ the happy path


def test_predict_answers_for_a_kaggle_sized_png(
    server: Server, kaggle_png: Path, exported: dict
) -> None:
    from fishopt.bundle import predict

    r = post(server, [("files", ("fish.png", kaggle_png.read_bytes(), "image/png"))])
    assert r.status_code == 200, r.text
    body = r.json()
    [item] = body["predictions"]
    assert item["file"] == "fish.png"
    classes = json.loads((exported["bundle"] / "model.json").read_text())["classes"]
    assert item["top"][0]["class"] in classes and len(item["top"]) == 3
    # The service and the library give the same answer for the same bytes.
    bundle = predict.load_bundle(exported["bundle"])
    X = predict.features_of_bytes(bundle, kaggle_png.read_bytes(), "x", 10**8)[None]
    [local] = predict.top_k(bundle, predict.probabilities(bundle, X), 3)
    assert [t["class"] for t in item["top"]] == [c for c, _ in local]
    for t, (_, p) in zip(item["top"], local, strict=True):
        assert t["probability"] == pytest.approx(p, abs=1e-5)


def test_several_files_and_top_k(server: Server, kaggle_png: Path, exported: dict) -> None:
    other = sorted((exported["data"] / "Shrimp" / "Shrimp").glob("*.png"))[0]
    r = httpx.post(
        f"{server.url}/predict?top_k=5",
        files=[
            ("files", ("one.png", kaggle_png.read_bytes(), "image/png")),
            ("files", ("two.png", other.read_bytes(), "image/png")),
        ],
        timeout=60,
    )
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["file"] for p in preds] == ["one.png", "two.png"]
    assert all(len(p["top"]) == 5 for p in preds)


def test_model_health_and_docs(server: Server, exported: dict) -> None:
    meta = json.loads((exported["bundle"] / "model.json").read_text())
    model = httpx.get(f"{server.url}/model").json()
    assert model["weights"]["sha256"] == meta["weights"]["sha256"]
    assert model["metrics"]["test"]["confusion"] == meta["metrics"]["test"]["confusion"]
    assert model["limits"]["max_upload_bytes"] == LIMIT_MB * 1024 * 1024
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["classes"] == 9
    assert httpx.get(f"{server.url}/docs").status_code == 200
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/predict" in schema["paths"]
    # No files is a 422, so the schema says so: at least one file is required.
    body = schema["components"]["schemas"]["Body_predict_route_predict_post"]
    assert body["required"] == ["files"] and body["properties"]["files"]["minItems"] == 1
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and 'type="file"' in page.text


def test_storage_and_data_locations_stay_in_the_bundle(server: Server, exported: dict) -> None:
    """The owner's bundle records where the study and its images live; nothing served says
    it (a database host or a folder path on the owner's machine)."""
    meta = json.loads((exported["bundle"] / "model.json").read_text())
    storage = meta["source"]["storage"]
    db_path = exported["storage"].removeprefix("sqlite:///")
    assert storage and db_path in storage  # the bundle keeps it, for its owner
    model = httpx.get(f"{server.url}/model")
    assert "storage" not in model.json()["source"]
    assert meta["source"]["data_source"]  # the bundle keeps the data's location too
    assert "data_source" not in model.json()["source"]
    assert meta["source"]["data_source"] not in model.text
    assert model.json()["source"]["trial"] == meta["source"]["trial"]
    card = httpx.get(f"{server.url}/card")
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/markdown")
    assert card.text == (exported["bundle"] / serve.CARD).read_text()
    if "/" in meta["source"]["data_source"]:
        assert meta["source"]["data_source"] not in card.text
    assert f"trial {meta['source']['trial']}" in card.text
    for r in (model, card, httpx.get(f"{server.url}/openapi.json")):
        assert db_path not in r.text and Path(db_path).name not in r.text


def test_default_limits() -> None:
    assert serve.Limits().max_upload_bytes == 10 * 1024 * 1024


# ----------------------------------------------------------------------------------- bad input


def _read_response(sock: socket.socket, timeout: float = 60) -> tuple[int, dict]:
    sock.settimeout(timeout)
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        if not chunk:
            break
        raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, json.loads(rest[:length])


MULTIPART_HEAD = (
    b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
    b"Content-Type: image/png\r\n\r\n"
)


def test_oversize_body_with_content_length_is_refused_before_the_body(server: Server) -> None:
    size = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
        )
        sock.sendall(MULTIPART_HEAD)  # and nothing more: the answer must not wait for 50 MB
        status, body = _read_response(sock, timeout=30)
    assert status == 413
    assert str(size) in body["detail"] and "limit" in body["detail"]


def stream_oversize(sock: socket.socket) -> tuple[int, dict]:
    """A chunked body (no Content-Length) just over the limit, never ended: (status, body).

    The body's last chunk is never sent, so a server that waited for the whole body before
    judging its size would never answer; only one that counts as it reads can."""
    piece = os.urandom(64 * 1024)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n"
        + f"{len(MULTIPART_HEAD):x}\r\n".encode()
        + MULTIPART_HEAD
        + b"\r\n"
    )
    sent = 0
    while sent <= LIMIT_MB * 1024 * 1024:
        try:
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break  # the server answered and closed: the answer is waiting to be read
        sent += len(piece)
    return _read_response(sock)


def test_oversize_chunked_body_is_refused_while_streaming(server: Server) -> None:
    """No Content-Length: the server counts as it reads and answers before the body ends."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        status, body = stream_oversize(sock)
    assert status == 413
    assert "limit" in body["detail"]


@pytest.mark.parametrize(
    ("files", "status", "words"),
    [
        ([("files", ("notes.png", b"just some text, no image", "image/png"))], 415, "not an image"),
        ([("files", ("empty.png", b"", "image/png"))], 422, "empty file"),
        ([("other", ("x.png", b"abc", "image/png"))], 422, "files: Field required"),
    ],
)
def test_bad_files_get_json_errors(
    server: Server, files: list, status: int, words: str, kaggle_png: Path
) -> None:
    r = post(server, files)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert words in r.json()["detail"]


def test_too_many_files(server: Server, kaggle_png: Path) -> None:
    blob = kaggle_png.read_bytes()[:1000]  # the count is checked before any decoding
    r = post(server, [("files", (f"{i}.png", blob, "image/png")) for i in range(MAX_FILES + 1)])
    assert r.status_code == 413
    assert f"{MAX_FILES + 1} files" in r.json()["detail"]


def png_bomb(side: int) -> bytes:
    """A valid grayscale PNG of side x side zero pixels: ~100 KB that decodes to side² bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(server: Server) -> None:
    bomb = png_bomb(10_000)  # 100 Mpx = 100 MB decoded, over the 50 Mpx default
    assert len(bomb) < LIMIT_MB * 1024 * 1024
    before = peak_rss_kb(server.proc.pid)
    r = post(server, [("files", ("bomb.png", bomb, "image/png"))])
    after = peak_rss_kb(server.proc.pid)
    assert r.status_code == 413
    assert "10000x10000" in r.json()["detail"] and "not decoded" in r.json()["detail"]
    assert after - before < 50_000, f"server peak memory grew by {after - before} kB"


def test_a_body_that_is_not_multipart_gets_400(server: Server) -> None:
    for content_type, body in [
        ("application/json", b'{"files": ["fish.png"]}'),
        ("text/plain", b"a fish"),
        ("multipart/form-data", b"--no-boundary-given"),  # multipart, but it cannot parse
    ]:
        r = httpx.post(
            f"{server.url}/predict", content=body, headers={"Content-Type": content_type}
        )
        assert r.status_code == 400, (content_type, r.text)
        assert r.headers["content-type"] == "application/json" and r.json()["detail"]


def test_server_survives_bad_input(server: Server, kaggle_png: Path) -> None:
    """Malformed HTTP, bodies cut off mid-way, a non-multipart body, a decompression bomb and
    a fake image: each refused, and the same process then answers a photo as before."""
    photo = [("files", ("fish.png", kaggle_png.read_bytes(), "image/png"))]
    before = post(server, photo).json()
    pid = server.proc.pid

    def raw(data: bytes, read: bool = True) -> int | None:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(data)
            if not read:
                return None  # the client goes away mid-request
            sock.settimeout(60)
            head = sock.recv(65536)
        return int(head.split()[1]) if head else None

    assert raw(b"NOT HTTP AT ALL\r\n\r\n") == 400
    assert raw(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: nine\r\n\r\n") == 400
    cut = raw_request(photo)
    raw(cut[: len(cut) // 2], read=False)  # Content-Length promises more than ever comes
    assert post(server, [("files", ("bomb.png", png_bomb(10_000), "image/png"))]).status_code == 413
    fake = [("files", ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png"))]
    assert post(server, fake).status_code == 415
    not_multipart = httpx.post(
        f"{server.url}/predict", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert not_multipart.status_code == 400
    assert server.proc.poll() is None and server.proc.pid == pid
    assert post(server, photo).json() == before


def tampered(exported: dict, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(exported["bundle"], copy)
    with (copy / "model.safetensors").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    return copy


@pytest.mark.parametrize("extra", [(), ("--workers", "2")], ids=["one process", "2 workers"])
def test_serve_refuses_to_start_with_tampered_weights(
    exported: dict,
    tmp_path: Path,
    extra: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    copy = tampered(exported, tmp_path)
    code, _out, err = run_main(monkeypatch, capsys, "serve", str(copy), "--port", "0", *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors" in lines[0] and "sha256" in lines[0]


def test_the_worker_app_factory_refuses_a_tampered_bundle(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A bundle changed after the CLI checked it: the worker's own check (the app factory a
    uvicorn worker calls as it starts) stops it, in one line, with the exit code that makes
    uvicorn's supervisor stop rather than restart it."""
    copy = tampered(exported, tmp_path)
    for name, value in serve.worker_env(copy, serve.Limits(), threads=1).items():
        monkeypatch.setenv(name, value)
    factory = getattr(serve, serve.WORKER_FACTORY.split(":")[1])
    with pytest.raises(SystemExit) as stopped:
        factory()
    assert stopped.value.code == serve.STARTUP_FAILURE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors" in lines[0] and "sha256" in lines[0], lines


# ------------------------------------------------------------------------------ --workers 2


def raw_request(files: list, path: str = "/predict") -> bytes:
    """The bytes of a multipart POST as httpx would send them, for a socket of our own."""
    req = httpx.Request("POST", f"http://test{path}", files=files)
    body = req.read()
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
    return (head + "\r\n").encode() + body


def exchange(port: int, pids: list[int], send) -> tuple[int, int, dict]:  # type: ignore[no-untyped-def]
    """One request on a new connection: (the worker that accepted it, status, JSON body).

    The worker is read from /proc once it has accepted the connection, before anything is
    sent, so the answer that follows is that worker's."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        client_port = sock.getsockname()[1]
        deadline = time.monotonic() + 60
        while (pid := accepted_by(port, client_port, pids)) is None:
            assert time.monotonic() < deadline, "no worker accepted the connection"
            time.sleep(0.005)
        if isinstance(send, bytes):
            sock.sendall(send)
            status, body = _read_response(sock, timeout=60)
        else:
            status, body = send(sock)
    return pid, status, body


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes: the parent's children started by multiprocessing's spawn."""
    kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(k) for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def test_workers_serve_with_the_limits_in_each(workers: Server, kaggle_png: Path) -> None:
    """Each limit is answered by each of the two workers: which worker took each connection is
    read from /proc, and requests go on until both have answered every kind (the kernel hands a
    connection to either; never both in 40 tries fails the test)."""
    pids = worker_pids(workers.proc.pid)
    assert len(pids) == 2
    photo = [("files", ("fish.png", kaggle_png.read_bytes(), "image/png"))]
    blob = kaggle_png.read_bytes()[:1000]  # the count is checked before any decoding
    many = [("files", (f"{i}.png", blob, "image/png")) for i in range(MAX_FILES + 1)]
    size = LIMIT_MB * 1024 * 1024 + 1
    declared = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
        + MULTIPART_HEAD
    )
    big = [("files", ("big.png", png_bomb(1100), "image/png"))]  # 1.21 Mpx, over --max-megapixels 1
    checks = {
        "a photo": (raw_request(photo), 200, "predictions"),
        "--max-files": (raw_request(many), 413, f"{MAX_FILES + 1} files"),
        "--max-upload-mb, declared": (declared, 413, str(size)),
        "--max-upload-mb, streamed": (stream_oversize, 413, "limit"),
        "--max-megapixels": (raw_request(big), 413, "1100x1100"),
    }
    seen: dict[str, set[int]] = {name: set() for name in checks}
    for _ in range(40):
        for name, (send, status, words) in checks.items():
            if seen[name] == set(pids):
                continue
            pid, got, body = exchange(workers.port, pids, send)
            assert got == status and words in json.dumps(body), (name, pid, got, body)
            seen[name].add(pid)
        if all(answered == set(pids) for answered in seen.values()):
            break
    assert all(answered == set(pids) for answered in seen.values()), (pids, seen)
    assert workers.proc.poll() is None and worker_pids(workers.proc.pid) == pids


# -------------------------------------------------------------- Schemathesis over the schema


EXAMPLES = 25  # per operation and mode: ~100 requests, a few seconds
REJECTIONS = [400, 413, 415, 422]  # how this service refuses a request (413: too many files)


@pytest.mark.slow
@pytest.mark.parametrize("mode_name", ["positive", "negative"])
def test_the_service_keeps_its_published_contract(workers: Server, mode_name: str) -> None:
    """Schemathesis over /openapi.json against the 2-worker server: no 5xx, and every answer's
    status, content type and body are the ones the schema declares.

    (Driven through Hypothesis here rather than schemathesis.pytest.from_fixture, which does
    not run under pytest 9 in schemathesis 4.32. Both are imported here, not at the top: 2.5 s
    of CPU that a test process which never runs this test would pay while collecting.)
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    assert {m.value for m in GenerationMode} == {"positive", "negative"}  # each is run
    mode = GenerationMode(mode_name)
    # Every answer is checked against what the schema promises. `positive_data_acceptance` is
    # left out on purpose: any bytes are a schema-valid file, and most are not a photo (415).
    contract = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    )
    schema = schemathesis.openapi.from_url(f"{workers.url}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /health", "GET /model", "GET /card", "POST /predict",
    }  # fmt: skip
    if mode is GenerationMode.NEGATIVE:  # only these take input that can be wrong
        operations = [op for op in operations if op.path == "/predict"]
    statuses: Counter[int] = Counter()
    for op in operations:

        @given(case=op.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(checks=contract, timeout=60)
            statuses[response.status_code] += 1

        check()
    assert sum(statuses.values()) >= len(operations), statuses
    if mode is GenerationMode.NEGATIVE:
        assert set(statuses) <= set(REJECTIONS), statuses
    print(f"{mode.value}: {sum(statuses.values())} requests, statuses {dict(statuses)}")


# ------------------------------------------------------------------------- the page, in Chromium


@pytest.fixture()
def uploads(kaggle_png: Path, tmp_path: Path) -> dict[str, Path]:
    """A photo and three files the page must refuse, each for its own reason."""
    text = tmp_path / "notes.txt"
    text.write_text("not a fish")
    fake = tmp_path / "fake.png"  # an image by its name, text inside: the server refuses it
    fake.write_bytes(b"just some text, no image")
    big = tmp_path / "huge.png"  # over the upload limit: refused before it is sent
    big.write_bytes(os.urandom(LIMIT_MB * 1024 * 1024 + 1024))
    return {"photo": kaggle_png, "text": text, "fake": fake, "big": big}


ITEMS = """Array.from(document.querySelectorAll('#result .item'), a => ({
  state: a.dataset.state,
  title: a.querySelector('h2').textContent,
  text: a.innerText,
  shown: a.querySelector('img') ? a.querySelector('img').naturalWidth : 0,
  bars: Array.from(a.querySelectorAll('.bar'), b => ({
    label: b.getAttribute('aria-label'),
    value: Number(b.getAttribute('aria-valuenow')),
    width: b.getBoundingClientRect().width / b.parentElement.getBoundingClientRect().width,
  })),
}))"""


def open_page(browser: Browser, server: Server) -> None:
    browser.goto(f"{server.url}/")
    browser.wait_for("document.getElementById('model').textContent.includes('trial')")


def expected_top(server: Server, photo: Path) -> list[dict]:
    r = post(server, [("files", (photo.name, photo.read_bytes(), "image/png"))])
    return r.json()["predictions"][0]["top"]


def check_photo(item: dict, photo: Path, top: list[dict]) -> None:
    """The photo is shown, with one bar per class, as long as its probability says."""
    assert item["state"] == "done", item["text"]
    assert item["title"] == f"{photo.name}: {top[0]['class']}"
    assert item["shown"] > 0, "the uploaded image is not displayed"
    assert [b["label"] for b in item["bars"]] == [t["class"] for t in top]
    for bar, t in zip(item["bars"], top, strict=True):
        assert bar["value"] == pytest.approx(t["probability"], abs=1e-4)
        assert bar["width"] == pytest.approx(t["probability"], abs=0.01)
    assert f"{top[0]['probability'] * 100:.1f} %" in item["text"]


@pytest.mark.slow
def test_upload_page_shows_each_image_with_bars_and_each_refusal(
    server: Server, browser: Browser, uploads: dict[str, Path]
) -> None:
    top = expected_top(server, uploads["photo"])
    open_page(browser, server)
    doc = browser.send("DOM.getDocument", sessionId=browser.session)["root"]["nodeId"]
    node = browser.send(
        "DOM.querySelector", {"nodeId": doc, "selector": "#file"}, sessionId=browser.session
    )["nodeId"]
    order = ["photo", "text", "fake", "big"]
    browser.send(
        "DOM.setFileInputFiles",
        {"files": [str(uploads[k]) for k in order], "nodeId": node},
        sessionId=browser.session,
    )
    browser.wait_for("document.getElementById('result').dataset.state === 'done'")
    items = dict(zip(order, browser.eval(ITEMS), strict=True))
    check_photo(items["photo"], uploads["photo"], top)
    for key in ("text", "fake", "big"):
        assert items[key]["state"] == "refused" and not items[key]["bars"], items[key]
    assert "Refused: not an image (text/plain)" in items["text"]["text"]
    assert "fake.png: not an image" in items["fake"]["text"] and "415" in items["fake"]["text"]
    assert f"over the {LIMIT_MB:.1f} MB upload limit" in items["big"]["text"]


@pytest.mark.slow
def test_upload_page_accepts_a_dropped_file(
    server: Server, browser: Browser, uploads: dict[str, Path]
) -> None:
    top = expected_top(server, uploads["photo"])
    open_page(browser, server)
    box = browser.eval(
        "(r => ({x: r.x + r.width / 2, y: r.y + r.height / 2}))"
        "(document.getElementById('drop').getBoundingClientRect())"
    )
    data = {"items": [], "files": [str(uploads["photo"])], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        browser.send(
            "Input.dispatchDragEvent",
            {"type": kind, "x": box["x"], "y": box["y"], "data": data},
            sessionId=browser.session,
        )
    browser.wait_for("document.getElementById('result').dataset.state === 'done'")
    [item] = browser.eval(ITEMS)
    check_photo(item, uploads["photo"], top)
