"""Serving benchmark: requests/s and p50/p99 latency of a real `fishopt serve` process.

Single-image ``POST /predict`` requests (one Kaggle-sized 590x445 PNG each) from 1 and from 8
concurrent clients, each client a thread with its own keep-alive connection; then the same
image's decode + forward time in this process, without HTTP, for comparison. It prints figures
and never passes or fails on time.

With ``--duration`` it is a load test instead: for each ``--workers`` count a fresh
``fishopt serve --workers W`` process, and for each ``--clients`` count that many clients held
busy for the whole duration (each loop bounded by time and by ``--max-requests``); any answer
but 200, and any connection error, counts as an error. ``--results FILE`` writes the table as
Markdown with the CPU model and the date.

    python -m bench.bench_serve                      # a demo bundle (random weights, real shape)
    python -m bench.bench_serve --bundle optimizers-bundle --requests 2000
    python -m bench.bench_serve --duration 60 --workers 1,2 --clients 8,32 \\
        --results bench/RESULTS-serve.md

Clients and server share the machine: on a small one the client threads' own CPU use is part of
what is measured, so the figures are a floor for what the service does with its own cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import torch

from fishopt.bundle import artifacts, export, predict
from fishopt.data import synthetic
from fishopt.training.hardware import cpu_info
from fishopt.training.model import MLPSpec, build_mlp

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "fishopt-bench-boundary"


def demo_bundle(folder: Path) -> Path:
    """A bundle with the study's network shape (2655-256-128-9) and seeded random weights.

    Serving cost does not depend on the weights' values, so the benchmark needs no study.
    """
    classes = sorted(synthetic.SPECIES)
    spec = MLPSpec(2655, (256, 128), len(classes))
    torch.manual_seed(0)
    model = build_mlp(spec)
    meta = {
        "format": export.FORMAT,
        "format_version": export.FORMAT_VERSION,
        "model": spec.to_dict(),
        "classes": classes,
        "preprocessing": {"grayscale": True, "width": 59, "height": 45, "scale": "0-1"},
        "source": {
            "study": "benchmark",
            "trial": 0,
            "params": {},
            "seed": 0,
            "best_epoch": 0,
            "data_source": "none (random weights)",
            "data_fingerprint": "-",
            "split": "-",
        },
        "metrics": {"valid_f1": None, "test": None},
        "weights_origin": "random (benchmark)",
        "versions": export.versions(),
    }
    blob = artifacts.weights_bytes(model.state_dict(), spec)
    return export.write_bundle(folder / "bundle", blob, meta)


def kaggle_png() -> bytes:
    photo, _mask = synthetic.render("Red Mullet", 0, 0, (590, 445))
    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    return buf.getvalue()


def multipart(image: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="fish.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, port: int, threads: int, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "fishopt.cli", "serve", str(bundle), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--threads", str(threads), "--workers", str(workers)], env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("server did not start in 180 s")


def client(port: int, body: bytes, n: int, out: list[float], errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        out.append(time.perf_counter() - t0)
        if response.status != 200:
            errors.append(f"{response.status} {payload[:100]!r}")


def load(port: int, body: bytes, concurrency: int, total: int) -> dict:
    per = max(1, total // concurrency)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    threads = [
        threading.Thread(target=client, args=(port, body, per, latencies[i], errors))
        for i in range(concurrency)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = np.asarray([x for lat in latencies for x in lat]) * 1000
    return {
        "clients": concurrency,
        "requests": len(flat),
        "errors": len(errors),
        "rps": len(flat) / wall,
        "p50": float(np.percentile(flat, 50)),
        "p99": float(np.percentile(flat, 99)),
    }


def holder(
    port: int, body: bytes, until: float, cap: int, out: list[float], errors: list[str]
) -> None:
    """One client: requests back to back until ``until`` (or ``cap`` requests)."""
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(cap):
        if time.perf_counter() >= until:
            break
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        out.append(time.perf_counter() - t0)
        if response.status != 200:
            errors.append(f"{response.status} {payload[:100]!r}")
    conn.close()


def hold(port: int, body: bytes, clients: int, duration: float, cap: int) -> dict:
    """``clients`` concurrent clients kept busy for ``duration`` seconds."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    t0 = time.perf_counter()
    until = t0 + duration
    threads = [
        threading.Thread(target=holder, args=(port, body, until, cap, latencies[i], errors))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)  # a request started just before the end may still be running
    wall = time.perf_counter() - t0
    flat = np.asarray([x for lat in latencies for x in lat]) * 1000
    return {
        "clients": clients,
        "seconds": wall,
        "requests": len(flat),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "rps": len(flat) / wall,
        "p50": float(np.percentile(flat, 50)) if len(flat) else float("nan"),
        "p99": float(np.percentile(flat, 99)) if len(flat) else float("nan"),
    }


def load_test(args: argparse.Namespace, bundle: Path, body: bytes) -> list[dict]:
    rows = []
    print(f"\n{'workers':>7} {'clients':>7} {'seconds':>7} {'requests':>8} {'errors':>6} "
          f"{'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}")  # fmt: skip
    for w in (int(v) for v in args.workers.split(",")):
        port = free_port()
        server = start_server(bundle, port, args.threads, workers=w)
        try:
            hold(port, body, w * 2, min(5.0, args.duration), 200)  # warm every worker up
            for c in (int(v) for v in args.clients.split(",")):
                r = {"workers": w, **hold(port, body, c, args.duration, args.max_requests)}
                rows.append(r)
                print(
                    f"{w:>7} {c:>7} {r['seconds']:>7.1f} {r['requests']:>8} {r['errors']:>6} "
                    f"{r['rps']:>7.1f} {r['p50']:>7.1f} {r['p99']:>7.1f}",
                    flush=True,
                )
                if r["errors"]:
                    print(f"        first error: {r['first_error'][:60]}")
        finally:
            server.terminate()
            server.wait(30)
    return rows


def write_results(path: Path, args: argparse.Namespace, rows: list[dict], load: float) -> None:
    cpu, _flags = cpu_info()
    lines = [
        "# Serving load test",
        "",
        *textwrap.wrap(
            f"{dt.date.today().isoformat()}, {cpu}, {os.cpu_count()} CPUs, python "
            f"{platform.python_version()}, torch {torch.__version__}. Load average "
            f"{load:.1f} before the run: the machine was shared with other work, so the "
            "figures are noisy and a floor.",
            80,
        ),
        "",
        *textwrap.wrap(
            f"Each row: a fresh `fishopt serve --workers W --threads {args.threads}` process on "
            f"127.0.0.1, then C client threads (one keep-alive connection each) sending "
            f"single-image `POST /predict` (590x445 PNG) back to back for {args.duration:g} s. "
            "Clients and server share the CPUs. Error: any answer but 200 or a connection error.",
            80,
        ),
        "",
        f"    python -m bench.bench_serve --duration {args.duration:g} \\",
        f"        --workers {args.workers} --clients {args.clients} --results {path}",
        "",
        "| workers | clients | seconds | requests | errors | req/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['workers']} | {r['clients']} | {r['seconds']:.1f} | {r['requests']} | "
            f"{r['errors']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} |"
            for r in rows
        ),
        "",
    ]
    path.write_text("\n".join(lines))
    print(f"\nwrote {path}")


def in_process(bundle_path: Path, image: bytes, n: int) -> dict:
    bundle = predict.load_bundle(bundle_path)
    decode, forward = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        X = predict.features_of_bytes(bundle, image, "fish.png", predict.DEFAULT_MAX_PIXELS)
        t1 = time.perf_counter()
        predict.top_k(bundle, predict.probabilities(bundle, X[None]), 3)
        t2 = time.perf_counter()
        decode.append((t1 - t0) * 1000)
        forward.append((t2 - t1) * 1000)
    total = [a + b for a, b in zip(decode, forward, strict=True)]
    return {
        "decode": statistics.median(decode),
        "forward": statistics.median(forward),
        "total": statistics.median(total),
        "p99": float(np.percentile(total, 99)),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_serve", description=__doc__)
    ap.add_argument("--bundle", type=Path, help="a bundle from export-best [default: a demo one]")
    ap.add_argument("--requests", type=int, default=600, help="requests per concurrency level")
    ap.add_argument("--concurrency", default="1,8", help="client counts, e.g. 1,8")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per server process")
    ap.add_argument("--duration", type=float, help="load test: seconds per clients count")
    ap.add_argument("--workers", default="1", help="load test: server processes, e.g. 1,2")
    ap.add_argument("--clients", default="8", help="load test: concurrent clients, e.g. 8,32")
    ap.add_argument("--max-requests", type=int, default=100_000, help="load test: cap per client")
    ap.add_argument("--results", type=Path, help="load test: write the table here (Markdown)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="fishopt-bench-") as tmp:
        bundle = args.bundle or demo_bundle(Path(tmp))
        image = kaggle_png()
        body = multipart(image)
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"python {platform.python_version()}, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} (other work on the machine skews figures)"
        )
        print(f"bundle: {bundle}; image: 590x445 PNG, {len(image) / 1024:.0f} KiB")
        if args.duration:
            load = os.getloadavg()[0]
            rows = load_test(args, bundle, body)
            if args.results:
                write_results(args.results, args, rows, load)
            return
        port = free_port()
        server = start_server(bundle, port, args.threads)
        try:
            load(port, body, 1, 30)  # warm-up: first requests pay for lazy imports
            print(f"\n{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} "
                  f"{'p50 ms':>8} {'p99 ms':>8}")  # fmt: skip
            for c in (int(v) for v in args.concurrency.split(",")):
                r = load(port, body, c, args.requests)
                print(
                    f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['rps']:>8.1f} "
                    f"{r['p50']:>8.2f} {r['p99']:>8.2f}"
                )
        finally:
            server.terminate()
            server.wait(20)
        p = in_process(bundle, image, min(args.requests, 300))
        print(
            f"\nin-process, no HTTP (median of {min(args.requests, 300)}): decode "
            f"{p['decode']:.2f} ms + forward {p['forward']:.3f} ms = {p['total']:.2f} ms "
            f"(p99 {p['p99']:.2f} ms), i.e. {1000 / p['total']:.0f} images/s "
            "on one thread"
        )


if __name__ == "__main__":
    main()
