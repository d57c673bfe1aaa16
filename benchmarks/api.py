"""REST API throughput and latency: `inspekt serve` under concurrent clients vs the raw Predictor.

    python benchmarks/api.py [--workspace W | --model BUNDLE --images FOLDER] [--seconds 10]
                             [--clients 1,8,32] [--client lean|httpx] [--threads N]
                             [--max-batch 32] [--max-wait-ms 5]

Builds the demo workspace when no model is given (``inspekt demo``; minutes the first time).
In one run: (1) the raw Predictor's images/s on the same encoded images (decode + preprocess +
model, in batches of --max-batch), with the server's inference threads per call ("x raw") and with
every core ("x best raw": what a script using the library alone gets, the stricter yardstick since
the server runs two model calls at once); (2) `inspekt serve` as a subprocess on a free loopback
port, driven by 1, 8 and 32 concurrent clients (one image per request, keep-alive connections) for
--seconds each after a 1 s warm-up: sustained images/s, p50 and p99 latency, and both ratios;
(3) the raw Predictor again, so the ratios use the mean of a measurement before and after the server.

Beside the rates it prints CPU milliseconds per image: the raw Predictor's process, and the server's
event-loop thread and whole process. On a busy machine the rates swing with the other load while the
CPU per image barely moves, so that is the figure to compare between versions there; the load average
and the CPU's instruction sets are printed too.

The clients run on the same machine as the server. ``--client lean`` (default) sends pre-built
HTTP/1.1 requests over asyncio streams, like wrk, so the load generator takes little CPU;
``--client httpx`` uses httpx.AsyncClient, whose own CPU use (a few ms per request) lowers the
server's figures on a small machine. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from inspekt.api.app import default_threads
from inspekt.engine.predictor import Predictor
from inspekt.io import list_images


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_model(workspace: Path) -> tuple[Path, Path]:
    """The demo classifier and its incoming images, building the demo when missing."""
    model, images = workspace / "models" / "surface-classifier.inspekt", workspace / "data" / "incoming"
    if not model.is_file():
        print(f"building the demo workspace in {workspace} (inspekt demo) ...", flush=True)
        subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "inspekt"), "demo", "--workspace", str(workspace)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return model, images


def raw_rate(model: Path, images: list[bytes], seconds: float, threads: int | None, batch: int) -> tuple[float, float]:
    """The Predictor's sustained images/s on encoded images (decoding included), in this process, and
    the process's CPU milliseconds per image."""
    predictor = Predictor.load(model, threads=threads, batch_size=batch)
    predictor.predict(images[:batch])  # warm-up
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        predictor.predict(images)
        done += len(images)
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1000


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (or one of its threads), from /proc (0 elsewhere)."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def multipart_request(path: str, name: str, image: bytes, port: int) -> bytes:
    """One complete HTTP/1.1 keep-alive request uploading ``image`` in the field ``files``."""
    boundary = "inspektbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _lean_client(
    port: int, requests: list[bytes], offset: int, stop: float, latencies: list[float], errors: list[int]
) -> None:
    """A minimal keep-alive HTTP client (like wrk): pre-built requests, so its own CPU use stays small."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(int(head.split()[1]))
            i += 1
    finally:
        writer.close()


async def _httpx_client(
    port: int, path: str, images: list[bytes], offset: int, stop: float, latencies: list[float], errors: list[int]
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        i = offset
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            response = await http.post(path, files={"files": (f"{i}.png", images[i % len(images)], "image/png")})
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                errors.append(response.status_code)
            i += 1


async def _run_clients(
    kind: str, port: int, path: str, images: list[bytes], clients: int, seconds: float
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    if kind == "lean":
        requests = [multipart_request(path, f"{i}.png", image, port) for i, image in enumerate(images)]
        jobs = [_lean_client(port, requests, c * 7, start + seconds, latencies, errors) for c in range(clients)]
    else:
        jobs = [_httpx_client(port, path, images, c * 7, start + seconds, latencies, errors) for c in range(clients)]
    await asyncio.gather(*jobs)
    return latencies, errors, time.perf_counter() - start


def load_level(kind: str, port: int, model: str, images: list[bytes], clients: int, seconds: float, pid: int) -> dict:
    """Drive the server (process ``pid``) with ``clients`` concurrent clients (after a 1 s warm-up):
    images/s, p50 / p99 latency (ms), errors, and the server's CPU ms per image (event loop, process)."""
    path = f"/v1/models/{model}/predict"
    asyncio.run(_run_clients(kind, port, path, images, clients, 1.0))
    loop_cpu, all_cpu = cpu_seconds(pid, pid), cpu_seconds(pid)  # the event loop is the main thread
    latencies, errors, elapsed = asyncio.run(_run_clients(kind, port, path, images, clients, seconds))
    done = max(len(latencies), 1)
    ms = np.array(latencies) * 1000
    return {
        "loop_cpu": (cpu_seconds(pid, pid) - loop_cpu) / done * 1000,
        "cpu": (cpu_seconds(pid) - all_cpu) / done * 1000,
        "clients": clients,
        "requests": len(latencies),
        "rate": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "errors": len(errors),
    }


def start_server(model: Path, port: int, args) -> subprocess.Popen:
    """`inspekt serve` as a subprocess; returns once /readyz answers."""
    command = [
        os.path.join(os.path.dirname(sys.executable), "inspekt"),
        "serve",
        f"bench={model}",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--max-batch",
        str(args.max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"inspekt serve exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("inspekt serve did not become ready in 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=Path("workspace"))
    parser.add_argument("--model", type=Path, help="bundle to serve (default: the demo classifier)")
    parser.add_argument("--images", type=Path, help="folder of images to send (default: the demo's incoming)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="inference threads per model call, the same for the server and the raw Predictor "
        "(default: the server's default, (CPUs - 1) / 2); the raw Predictor is also measured with "
        "every core",
    )
    parser.add_argument(
        "--client",
        choices=("lean", "httpx"),
        default="lean",
        help="lean: a minimal keep-alive HTTP client (little CPU); httpx: httpx.AsyncClient",
    )
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()

    model, folder = (args.model, args.images) if args.model else demo_model(args.workspace)
    folder = folder or args.workspace / "data" / "incoming"
    images = [p.read_bytes() for p in list_images(folder)][:64]
    if not images:
        raise SystemExit(f"{folder}: no images")
    from inspekt.engine.quant_speed import cpu_flags, describe_cpu

    print(
        f"model {model}; {len(images)} images from {folder}; {os.cpu_count()} CPU(s), "
        f"{platform.processor() or platform.machine()} ({describe_cpu(cpu_flags())}); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    # the Predictor with the server's threads per call, and with every core (what a script using the
    # library alone gets: the stricter yardstick, since the server runs several calls at once)
    counts = sorted({args.threads, os.cpu_count() or 1})
    before = {t: raw_rate(model, images, args.seconds, t, args.max_batch) for t in counts}
    port = _free_port()
    server = start_server(model, port, args)
    try:
        rows = [
            load_level(args.client, port, "bench", images, int(c), args.seconds, server.pid)
            for c in args.clients.split(",")
        ]
    finally:
        server.terminate()
        server.wait(20)
    after = {t: raw_rate(model, images, args.seconds, t, args.max_batch) for t in counts}
    raws = {t: (before[t][0] + after[t][0]) / 2 for t in counts}
    for t in counts:
        print(
            f"raw Predictor (decode + preprocess + model, batches of {args.max_batch}, {t} inference "
            f"thread(s)): {before[t][0]:.0f} images/s before the server, {after[t][0]:.0f} after; "
            f"{(before[t][1] + after[t][1]) / 2:.2f} CPU ms/image",
            flush=True,
        )
    raw, best_raw = raws[args.threads], max(raws.values())
    print(f"\nclient: {args.client}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'clients':>7} {'requests':>9} {'images/s':>9} {'x raw':>6} {'x best raw':>10} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'CPU ms/img':>10} {'loop ms/img':>11}"
    )
    for r in rows:
        print(
            f"{r['clients']:>7} {r['requests']:>9} {r['rate']:>9.0f} {r['rate'] / raw:>6.2f} "
            f"{r['rate'] / best_raw:>10.2f} {r['p50']:>7.1f} {r['p99']:>7.1f} {r['errors']:>6} "
            f"{r['cpu']:>10.2f} {r['loop_cpu']:>11.2f}"
        )
    best = max(rows, key=lambda r: r["rate"])
    print(
        f"\nbest sustained rate {best['rate']:.0f} images/s = {best['rate'] / raw:.2f} x raw with the server's "
        f"{args.threads} thread(s) per call, {best['rate'] / best_raw:.2f} x the best raw rate "
        f"({statistics.median(r['rate'] for r in rows):.0f} median over client counts)"
    )


if __name__ == "__main__":
    main()
