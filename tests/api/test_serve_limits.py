"""Bounds under hostile input, against a real uvicorn server: the server-wide pixel budget, the cap
and deadline on enhancement work (stopped when the client leaves), and deeply nested JSON."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")

from conftest import free_port, png_bytes, uvicorn_thread
from inspekt.api import ServeSettings, create_app
from inspekt.errors import ConfigError

PREDICT = "/v1/models/clf/predict"
NOISY = np.random.default_rng(0).integers(0, 255, (384, 384, 3), np.uint8)  # nl_means: ~0.35 s a step here


def _files(items) -> list:
    return [("files", (name, data, "image/png")) for name, data in items]


@pytest.fixture(scope="module")
def server(trained):
    """uvicorn on loopback with a small server-wide budget (600,000 pixels) and a 2 s request timeout."""
    settings = ServeSettings(
        models=(f"clf={trained.bundle}",),
        max_request_pixels=600_000,
        max_inflight_pixels=600_000,
        request_timeout=2.0,
        body_timeout=1.0,
        max_enhance_seconds=1000,
    )
    app = create_app(settings)
    with uvicorn_thread(app) as url:
        yield url, app.state.inspekt


def _wait_idle(state, seconds: float) -> float:
    """Seconds until the budget is free again (fails after ``seconds``)."""
    start = time.monotonic()
    while state.budget.used and time.monotonic() - start < seconds:
        time.sleep(0.02)
    assert state.budget.used == 0, f"{state.budget.used:,} pixels still held after {seconds} s"
    return time.monotonic() - start


def test_concurrent_requests_share_one_pixel_budget(server):
    url, state = server
    big = png_bytes(np.full((500, 500), 7, np.uint8))  # 250,000 pixels each: two fit the budget at once, not three
    state.budget.peak = 0
    with httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: http.post(PREDICT, files=_files([(f"{i}.png", big)])), range(8)))
    assert [r.status_code for r in responses] == [200] * 8  # they waited their turn: none refused
    assert 250_000 <= state.budget.peak <= 600_000  # never more pixels in flight than the budget
    _wait_idle(state, 5)


def test_a_request_over_the_whole_budget_is_413_before_decoding(server):
    url, _ = server
    tile = png_bytes(np.zeros((400, 400), np.uint8))  # 160,000 pixels; unsharp holds 9 copies: 1.44 M > 600,000
    response = httpx.post(url + PREDICT, files=_files([("t.png", tile)]), data={"enhance": "unsharp"}, timeout=30)
    assert response.status_code == 413, response.text
    assert "--max-inflight-pixels" in response.json()["detail"]


@pytest.mark.parametrize(
    ("spec", "status", "words"),
    [
        (" + ".join(["median"] * 17), 422, "at most 16 steps"),
        ('{"steps": ' + "[" * 30_000 + "]" * 30_000 + "}", 422, "nested more than"),  # was a RecursionError
    ],
)
def test_enhancement_specs_are_bounded(server, spec, status, words):
    url, _ = server
    tile = png_bytes(np.full((64, 64), 100, np.uint8))
    response = httpx.post(url + PREDICT, files=_files([("a.png", tile)]), data={"enhance": spec}, timeout=30)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_costly_enhancement_is_refused_by_its_estimate(trained):
    from fastapi.testclient import TestClient

    settings = ServeSettings(models=(f"clf={trained.bundle}",), max_enhance_seconds=1.0)
    with TestClient(create_app(settings)) as client:
        costly = client.post(
            PREDICT, files=_files([("n.png", png_bytes(NOISY))]), data={"enhance": "nl_means + nl_means + nl_means"}
        )
        cheap = client.post(PREDICT, files=_files([("n.png", png_bytes(NOISY))]), data={"enhance": "median"})
    assert costly.status_code == 422 and "--max-enhance-seconds" in costly.json()["detail"]
    assert cheap.status_code == 200


def test_a_request_past_its_deadline_is_503_and_its_work_stops(server):
    url, state = server
    chain = " + ".join(["nl_means:h=30"] * 12)  # ~4 s of work: past the 2 s timeout
    start = time.monotonic()
    response = httpx.post(
        url + PREDICT, files=_files([("n.png", png_bytes(NOISY))]), data={"enhance": chain}, timeout=60
    )
    assert response.status_code == 503, response.text
    assert "--request-timeout" in response.json()["detail"]
    _wait_idle(state, 1.5)  # stopped at the next step, not after the whole chain
    assert time.monotonic() - start < 4.0


def test_work_stops_when_the_client_leaves(server):
    url, state = server
    chain = " + ".join(["nl_means:h=30"] * 5)  # ~1.8 s of work, under the timeout
    small = png_bytes(np.full((64, 64), 100, np.uint8))
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        httpx.post(url + PREDICT, files=_files([("n.png", png_bytes(NOISY))]), data={"enhance": chain}, timeout=0.4)
    assert _wait_idle(state, 1.5) < 1.2  # the work stopped soon after, not 1.8 s of work later
    answer = httpx.post(url + PREDICT, files=_files([("s.png", small)]), timeout=30)
    assert answer.status_code == 200  # and the server goes on


def test_a_small_request_is_served_while_a_heavy_one_runs(server):
    url, _ = server
    chain = " + ".join(["nl_means:h=30"] * 3)  # ~1 s of work: well inside the 2 s timeout on a busy machine
    small = png_bytes(np.full((64, 64), 100, np.uint8))
    with httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(2) as pool:
        heavy = pool.submit(http.post, PREDICT, files=_files([("n.png", png_bytes(NOISY))]), data={"enhance": chain})
        time.sleep(0.3)  # the heavy request is being enhanced
        start = time.monotonic()
        quick = http.post(PREDICT, files=_files([("s.png", small)]))
        waited = time.monotonic() - start
        assert heavy.result().status_code == 200
    assert quick.status_code == 200
    assert waited < 1.0, f"a 64x64 request waited {waited:.2f} s behind a heavy one"


def test_a_trickling_body_is_cut_off_with_408(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 100000\r\n\r\n--b\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)  # ... and then nothing more: the rest of the 100,000 bytes never come
        start = time.monotonic()
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 408"), answer[:200]
    assert "--body-timeout" in answer and time.monotonic() - start < 5


def test_settings_refuse_a_request_budget_larger_than_the_server_budget(trained):
    with pytest.raises(ConfigError, match="--max-request-pixels"):
        ServeSettings(models=(f"clf={trained.bundle}",), max_request_pixels=10**9, max_inflight_pixels=10**8)


def test_inspekt_serve_caps_open_connections(trained):
    import os
    import subprocess
    import sys

    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    command = [exe, "serve", f"clf={trained.bundle}", "--port", str(port), "--max-connections", "3"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url, stalled = f"http://127.0.0.1:{port}", []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for _ in range(3):  # connections that send a head and never their body
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(
                f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                "Content-Length: 100000\r\n\r\n--b\r\n".encode()
            )
            stalled.append(sock)
        time.sleep(0.5)
        assert httpx.get(url + "/healthz", timeout=10).status_code == 503  # refused at once, not queued forever
        for sock in stalled:
            sock.close()
        time.sleep(0.5)
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    finally:
        for sock in stalled:
            sock.close()
        proc.terminate()
        proc.wait(30)
