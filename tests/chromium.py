"""Headless Chromium driven over the DevTools protocol on a pipe (no extra packages, no port).

Chromium started with ``--remote-debugging-pipe`` reads JSON commands on fd 3 and writes
replies and events on fd 4, each message ending in a NUL byte. The tests use it to load a page,
record every network request the page makes, and evaluate JavaScript in the rendered page.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from needs import executable

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]


def chromium_path() -> str:
    return executable("chromium", "chromium", "chromium-browser")


class Browser:
    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="fishopt-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        # Move the child's ends above 4 so wiring them onto fds 3 and 4 cannot clobber either.
        high_cmd, high_res = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, res_w))
        os.close(cmd_r)
        os.close(res_w)
        cmd_r, res_w = high_cmd, high_res

        def wire() -> None:  # in the child: fd 3 reads our commands, fd 4 carries replies
            os.dup2(cmd_r, 3)  # dup2 clears close-on-exec, so both survive the exec
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=wire,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(res_w)
        self._next = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.events: list[dict] = []
        self._login: tuple[str, str] | None = None  # see answer_logins
        self._context = ""
        threading.Thread(target=self._read, daemon=True).start()
        self.session = self._open_session()

    # ------------------------------------------------------------------ protocol plumbing

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk:
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    self.events.append(msg)
                    self._intercept(msg)

    def post(self, method: str, params: dict, session: str) -> None:
        """Send a command without waiting for its reply (safe from the reader thread)."""
        with self._lock:
            self._next += 1
            ident = self._next
        msg = {"id": ident, "method": method, "params": params, "sessionId": session}
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")

    def _intercept(self, msg: dict) -> None:
        """Answer HTTP login prompts the way a person would, once answer_logins is on."""
        if msg.get("method") not in ("Fetch.requestPaused", "Fetch.authRequired"):
            return
        params, session = msg["params"], msg["sessionId"]
        if msg["method"] == "Fetch.requestPaused":
            self.post("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
        elif msg.get("method") == "Fetch.authRequired":
            if self._login is None:
                answer = {"response": "CancelAuth"}  # the person closes the prompt
            else:
                user, password = self._login
                answer = {"response": "ProvideCredentials", "username": user, "password": password}
            self.post(
                "Fetch.continueWithAuth",
                {"requestId": params["requestId"], "authChallengeResponse": answer},
                session,
            )

    def send(self, method: str, params: dict | None = None, timeout: float = 30, **kw: Any):
        with self._lock:
            self._next += 1
            ident = self._next
            q: queue.Queue = queue.Queue()
            self._replies[ident] = q
        msg = {"id": ident, "method": method, "params": params or {}, **kw}
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        reply = q.get(timeout=timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def _open_session(self) -> str:
        """A new tab in a new browser context: no cookies, cache or remembered logins."""
        self._context = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send(
            "Target.createTarget", {"url": "about:blank", "browserContextId": self._context}
        )["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        sid = session["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            self.send(f"{domain}.enable", sessionId=sid)
        return sid

    def fresh(self) -> Browser:
        """This browser with a fresh tab in a fresh context, as if just started (one Chromium
        process serves every test; starting one costs seconds)."""
        with contextlib.suppress(Exception):
            self.send("Target.disposeBrowserContext", {"browserContextId": self._context})
        self._login = None
        self.events.clear()
        self.session = self._open_session()
        return self

    # ---------------------------------------------------------------------------- helpers

    def goto(self, url: str, timeout: float = 60) -> None:
        """Navigate and wait until the new document (not the previous one) has loaded."""
        # Mark the old document; the new one (after any redirect) will not carry the mark.
        self.eval("window.__fishoptOld = true")
        self.events.clear()
        self.send("Page.navigate", {"url": url}, sessionId=self.session)
        self.wait_for("!window.__fishoptOld && document.readyState === 'complete'", timeout)

    def answer_logins(self, login: tuple[str, str] | None) -> None:
        """From now on, answer every HTTP basic-auth prompt with ``(user, password)``, or
        dismiss it when ``login`` is None. Headless Chromium shows no prompt, so this stands in
        for the person typing; the browser then remembers the login as it would after a prompt.
        """
        self._login = login
        self.send(
            "Fetch.enable",
            {"patterns": [{"urlPattern": "*"}], "handleAuthRequests": True},
            sessionId=self.session,
        )

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            sessionId=self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """Poll a JS expression until it is truthy (the page renders asynchronously)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError as exc:  # mid-navigation: no body yet, context replaced
                value = str(exc)[:200]
                time.sleep(0.25)
                continue
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {expression!r} (last value {value!r})")

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in list(self.events)
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def failed_requests(self) -> list[dict]:
        return [
            e["params"] for e in list(self.events) if e.get("method") == "Network.loadingFailed"
        ]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        shutil.rmtree(self.profile, ignore_errors=True)


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
