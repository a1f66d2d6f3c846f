"""The prediction service, for real: a `fishopt serve` process on 127.0.0.1 driven over HTTP,
raw sockets for the body-size limits, and the upload page in headless Chromium."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import run_main
from PIL import Image

from fishopt import serve

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 2  # the test server's upload limit (the default, 10 MB, is checked separately)
MAX_FILES = 4


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory so far (a freed allocation still counts)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def server(exported: dict) -> Iterator[Server]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable, "-m", "fishopt.cli", "serve", str(exported["bundle"]),
        "--host", "127.0.0.1", "--port", str(port), "--max-upload-mb", str(LIMIT_MB),
        "--max-files", str(MAX_FILES), "--threads", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not answer /health in 180 s")
            time.sleep(0.3)
        yield Server(url, port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    assert "/predict" in httpx.get(f"{server.url}/openapi.json").json()["paths"]
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and 'type="file"' in page.text


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


def test_oversize_chunked_body_is_refused_while_streaming(server: Server) -> None:
    """No Content-Length: the server must count as it reads and answer before the end."""
    planned = 40 * 1024 * 1024
    piece = os.urandom(64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n"
            + f"{len(MULTIPART_HEAD):x}\r\n".encode()
            + MULTIPART_HEAD
            + b"\r\n"
        )
        while sent < planned:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered mid-body
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        status, body = _read_response(sock)
    assert status == 413
    assert "limit" in body["detail"]
    assert sent < planned / 2, f"the server let the client send {sent} of {planned} bytes"


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


def test_server_survives_bad_input(server: Server) -> None:
    assert server.proc.poll() is None
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_serve_refuses_to_start_with_tampered_weights(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(exported["bundle"], copy)
    with (copy / "model.safetensors").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    port = free_port()
    code, _out, err = run_main(monkeypatch, capsys, "serve", str(copy), "--port", str(port))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors" in lines[0] and "sha256" in lines[0]


# ------------------------------------------------------------------------- the page, in Chromium


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4).

    A pipe needs no port, no websocket library and no chromedriver matching the browser.
    """

    FLAGS = (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--remote-debugging-pipe",
    )  # fmt: skip

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="fishopt-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: its fd 3 reads our commands, fd 4 writes answers
            os.dup2(to_browser_r, 100)
            os.dup2(from_browser_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.proc = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        msg: dict = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next:
                    if "error" in answer:
                        raise AssertionError(f"{method}: {answer['error']}")
                    return answer["result"]
            ready, _, _ = select.select([self._from_browser], [], [], 1)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise AssertionError(f"chromium closed the pipe during {method}")
                self._buf += chunk
            elif time.monotonic() > deadline:
                raise AssertionError(f"chromium did not answer {method} in 60 s")

    def evaluate(self, session: str, expression: str) -> object:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session,
        )
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 60) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(session, expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(20)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture()
def chromium() -> Iterator[Chromium]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    browser = Chromium(binary)
    try:
        yield browser
    finally:
        browser.close()


@pytest.mark.slow
def test_upload_page_shows_the_species_in_chromium(
    server: Server, kaggle_png: Path, chromium: Chromium
) -> None:
    r = post(server, [("files", (kaggle_png.name, kaggle_png.read_bytes(), "image/png"))])
    expected = r.json()["predictions"][0]["top"]

    target = chromium.call("Target.createTarget", {"url": f"{server.url}/"})["targetId"]
    session = chromium.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    chromium.wait_for(session, "document.readyState === 'complete'")
    chromium.wait_for(session, "document.getElementById('model').textContent.includes('trial')")
    root = chromium.call("DOM.getDocument", {}, session)["root"]["nodeId"]
    node = chromium.call("DOM.querySelector", {"nodeId": root, "selector": "#file"}, session)
    chromium.call(
        "DOM.setFileInputFiles", {"files": [str(kaggle_png)], "nodeId": node["nodeId"]}, session
    )
    chromium.evaluate(session, "document.getElementById('go').click()")
    state = chromium.wait_for(
        session,
        "['done', 'error'].includes(document.getElementById('result').dataset.state)"
        " && document.getElementById('result').dataset.state",
    )
    shown = chromium.evaluate(session, "document.getElementById('result').innerText")
    assert state == "done", shown
    heading = chromium.evaluate(session, "document.querySelector('#result .species').textContent")
    assert heading == f"{kaggle_png.name}: {expected[0]['class']}"
    for t in expected:
        assert t["class"] in str(shown)
    assert f"{expected[0]['probability'] * 100:.1f} %" in str(shown)
