"""Denial-of-service cases replayed against `inspekt serve` on loopback: peak memory, the latency of
small requests while the attacks run, and the count of 5xx answers.

    python benchmarks/abuse.py [--model BUNDLE] [--seconds 20] [--attack all|pixels|enhance|disconnect|trickle]

Without --model, trains a small classifier on inspekt's synthetic surfaces (seconds). Starts
`inspekt serve MODEL` (default limits) as a subprocess on a free loopback port, then, for each
attack, runs it for --seconds (bounded in count as well) while a prober sends one 64x64 PNG every
100 ms, and samples the server's RSS every 50 ms. The attacks (issue 18):

- pixels: 8 clients at once, each request four 7000x7000 all-zero PNGs (1.1 MB uploaded each);
- enhance: 2 clients sending 1024x1024 noise with long `nl_means:h=30` chains (the 12-step chain is
  refused by its cost estimate; a 3-step one is within it and runs in the heavy lane);
- disconnect: clients that send a costly enhancement and hang up after 0.5 s;
- trickle: 150 connections that send a request head and a few body bytes, then stall;
- mix: all of the above at once;
- bomb: `inspekt predict` of a .inspekt whose model.onnx is a 1.5 GiB zero member (peak RSS of the command).

Prints, per attack: attack requests and their status counts, the prober's p50 / p99 latency and its
failures, the server's peak RSS, and the count of 5xx. Targets: peak RSS <= 1.5 GB, small-request
p99 <= 1 s, no 5xx. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

PREDICT = "/v1/models/m/predict"


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
    return " ".join(f for f in wanted if f in flags.split())


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_model(folder: Path) -> Path:
    """A small classifier trained on synthetic surfaces (what the attacks are served by)."""
    from inspekt.config import TrainConfig
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train

    data = write_dataset(folder / "data", n=80, size=64, seed=0).root
    config = TrainConfig(task="classify", data=str(data), epochs=2, imgsz=64, out=str(folder / "runs"), threads=2)
    return train(config).bundle


class Server:
    """`inspekt serve` in a subprocess, its RSS sampled every 50 ms."""

    def __init__(self, model: Path, log: Path):
        self.port, self.log = _free_port(), log
        exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
        with log.open("w") as sink:  # a file, not a pipe: an unread pipe would block the server when full
            self.proc = subprocess.Popen(
                [exe, "serve", f"m={model}", "--port", str(self.port), "--log-level", "warning"],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.url, self.peak_mb, self._stop = f"http://127.0.0.1:{self.port}", 0.0, threading.Event()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"inspekt serve did not start: {log.read_text()[-2000:]}")
        threading.Thread(target=self._sample, daemon=True).start()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

    def _sample(self) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(20)


async def _prober(url: str, stop: float, latencies: list[float], failures: collections.Counter) -> None:
    small = _png(np.full((64, 64, 3), 90, np.uint8))
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < stop:
            start = time.monotonic()
            try:
                response = await http.post(PREDICT, files={"files": ("small.png", small, "image/png")})
                failures[response.status_code] += response.status_code != 200
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1
            latencies.append(time.monotonic() - start)
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - start)))


async def _sender(url: str, stop: float, limit: int, statuses: collections.Counter, make, timeout: float) -> None:
    """Send ``make()`` requests (files, data) one after the other until ``stop`` or ``limit`` requests."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        for _ in range(limit):
            if time.monotonic() >= stop:
                return
            files, data = make()
            try:
                response = await http.post(PREDICT, files=files, data=data)
                statuses[response.status_code] += 1
            except httpx.TimeoutException:
                statuses["hung up"] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1


async def _trickler(port: int, stop: float, statuses: collections.Counter) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        statuses[type(exc).__name__] += 1
        return
    writer.write(
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 1000000\r\n\r\n--b\r\n".encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), max(0.1, stop - time.monotonic()))
        statuses[int(head.split()[1])] += 1
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        statuses["still open" if time.monotonic() >= stop else "closed"] += 1
    writer.close()


def attack_clients(name: str, url: str, port: int, stop: float, statuses: collections.Counter) -> list:
    zeros = _png(np.zeros((7000, 7000), np.uint8))
    noise = _png(np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), np.uint8))
    chain12, chain3 = " + ".join(["nl_means:h=30"] * 12), " + ".join(["nl_means:h=30"] * 3)
    if name == "pixels":
        files = [("files", (f"z{i}.png", zeros, "image/png")) for i in range(4)]
        return [_sender(url, stop, 50, statuses, lambda: (files, {}), 120) for _ in range(8)]
    if name == "enhance":
        jobs = [lambda c=c: ([("files", ("n.png", noise, "image/png"))], {"enhance": c}) for c in (chain12, chain3)]
        return [_sender(url, stop, 20, statuses, job, 120) for job in jobs]
    if name == "disconnect":
        job = lambda: ([("files", ("n.png", noise, "image/png"))], {"enhance": chain3})  # noqa: E731
        return [_sender(url, stop, 40, statuses, job, 0.5) for _ in range(2)]
    if name == "trickle":
        return [_trickler(port, stop, statuses) for _ in range(150)]
    if name == "mix":  # every attack at once
        return [
            c
            for n in ("pixels", "enhance", "disconnect", "trickle")
            for c in attack_clients(n, url, port, stop, statuses)
        ]
    raise SystemExit(f"unknown attack {name!r}")


async def run_attack(server: Server, name: str, seconds: float) -> dict:
    statuses, failures, latencies = collections.Counter(), collections.Counter(), []
    stop = time.monotonic() + seconds
    server.peak_mb = server.rss_mb()
    await asyncio.gather(
        _prober(server.url, stop, latencies, failures),
        *attack_clients(name, server.url, server.port, stop, statuses),
    )
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    fives = sum(v for k, v in (statuses + failures).items() if isinstance(k, int) and k >= 500)
    return {
        "statuses": dict(statuses),
        "p50": q[49],
        "p99": q[98],
        "probes": len(latencies),
        "failures": dict(failures),
        "peak": server.peak_mb,
        "5xx": fives,
    }


def bomb_rss(model: Path, image: Path, folder: Path) -> tuple[int, int, str]:
    """Peak RSS (MB) and exit status of `inspekt predict` on a bundle whose model.onnx is 1.5 GiB of zeros."""
    bomb = folder / "bomb.inspekt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in sorted(model.iterdir()):
            if member.name != "model.onnx":
                archive.write(member, member.name)
        with archive.open("model.onnx", "w", force_zip64=True) as handle:
            for _ in range(1536):
                handle.write(bytes(2**20))
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, p.stderr.strip()[:120])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, exe, "predict", str(bomb), str(image)], capture_output=True, text=True
    )
    status, rss, message = out.stdout.split(" ", 2)
    return int(status), int(rss), message.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a classifier bundle (default: train a small one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each attack runs")
    parser.add_argument("--attack", default="all", help="all, or some of pixels,enhance,disconnect,trickle,mix,bomb")
    args = parser.parse_args()
    print(f"CPU: {os.cpu_count()} cores, {platform.machine()}, flags: {cpu_flags()}")
    with tempfile.TemporaryDirectory(prefix="inspekt-abuse-") as tmp:
        model = args.model or small_model(Path(tmp))
        names = (
            ["pixels", "enhance", "disconnect", "trickle", "bomb"] if args.attack == "all" else args.attack.split(",")
        )
        server = Server(model, Path(tmp) / "serve.log") if set(names) - {"bomb"} else None
        if server:
            print(f"server idle RSS: {server.rss_mb():.0f} MB")
        print(f"{'attack':<11} {'peak RSS':>9} {'p50':>7} {'p99':>7} {'5xx':>4}  attack answers / probe failures")
        for name in names:
            if name == "bomb":
                image = Path(tmp) / "probe.png"
                image.write_bytes(_png(np.full((64, 64, 3), 90, np.uint8)))
                status, rss, message = bomb_rss(model if model.is_dir() else model.parent, image, Path(tmp))
                print(f"{'bomb':<11} {rss:>6} MB  (inspekt predict exit {status}: {message})")
                continue
            r = asyncio.run(run_attack(server, name, args.seconds))
            print(
                f"{name:<11} {r['peak']:>6.0f} MB {r['p50'] * 1000:>5.0f}ms {r['p99'] * 1000:>5.0f}ms {r['5xx']:>4}  "
                f"{r['statuses']} / {r['failures'] or 'none'} of {r['probes']} probes"
            )
            time.sleep(2)  # let the server settle between attacks
        if server:
            print(f"server RSS after the attacks: {server.rss_mb():.0f} MB")
            server.close()
            lines = server.log.read_text(errors="replace").splitlines()
            print(f"server log: {len(lines)} lines" + "".join(f"\n  {line}" for line in lines[-5:]))


if __name__ == "__main__":
    main()
