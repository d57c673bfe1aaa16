"""The REST API (`inspekt serve`): in-process with FastAPI's TestClient, against a real uvicorn server
in a thread (concurrency, streaming limits), and end to end through the `inspekt serve` command
(API key, HTTPS with a self-signed certificate)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from fastapi.testclient import TestClient

from conftest import free_port, png_bytes, uvicorn_thread
from inspekt.api import ServeSettings, create_app
from inspekt.engine.predictor import Predictor
from inspekt.enhance import Pipeline

PREDICT = "/v1/models/clf/predict"
PROBLEM = "application/problem+json"


def _files(items) -> list:
    return [("files", (name, data, "image/png")) for name, data in items]


@pytest.fixture(scope="module")
def images(synth_classes) -> list[tuple[str, bytes]]:
    """12 of the training set's images as (file name, PNG bytes), three per class."""
    chosen = [p for folder in sorted(synth_classes.iterdir()) if folder.is_dir() for p in sorted(folder.iterdir())[:3]]
    return [(p.name, p.read_bytes()) for p in chosen]


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    return Predictor.load(trained.bundle)


@pytest.fixture(scope="module")
def client(trained):
    app = create_app(
        ServeSettings(models=(f"clf={trained.bundle}",), max_upload_mb=0.5, max_pixels=200_000, max_files=20)
    )
    with TestClient(app) as test_client:
        yield test_client


def _same(served: dict, expected) -> None:
    assert served["label"] == expected.label
    assert served["score"] == pytest.approx(expected.score, abs=1e-5)
    assert served["scores"] == pytest.approx(expected.scores, abs=1e-5)


# --- in process --------------------------------------------------------------------------------


def test_models_lists_the_cards(client, predictor):
    [card] = client.get("/v1/models").json()["models"]
    assert card["name"] == "clf" and card["task"] == "classify"
    assert card["classes"] == list(predictor.card.classes)
    assert card["input"]["size"] == list(predictor.card.input.size) and card["drift_reference"] is True
    sanity = predictor.card.sanity
    assert card["sanity"] == (None if sanity is None else {"ok": sanity.ok, "why": sanity.why})
    assert client.get("/v1/models/clf").json() == card


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": ["clf"]}


def test_predict_one_and_many_equal_the_predictor(client, images, predictor):
    one = client.post(PREDICT, files=_files(images[:1]))
    assert one.status_code == 200
    [served] = one.json()["predictions"]
    _same(served, predictor.predict(images[0][1])[0])
    assert served["path"] == images[0][0]  # named by the upload's file name, like the CLI names files
    many = client.post(PREDICT, files=_files(images)).json()
    assert [p["path"] for p in many["predictions"]] == [name for name, _ in images]
    for served, expected in zip(many["predictions"], predictor.predict([data for _, data in images])):
        _same(served, expected)
    assert many["skipped"] == []


def test_a_bad_file_in_a_batch_is_reported_and_the_others_predicted(client, images):
    body = client.post(PREDICT, files=_files([images[0], ("broken.png", b"not an image"), images[1]])).json()
    assert [p["path"] for p in body["predictions"]] == [images[0][0], images[1][0]]
    [skipped] = body["skipped"]
    assert skipped["file"] == "broken.png" and skipped["status"] == 422 and "not an image" in skipped["detail"]


def test_only_bad_files_is_a_422_problem_naming_the_file(client):
    response = client.post(PREDICT, files=_files([("broken.png", b"\x89PNG\r\n\x1a\n garbage")]))
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == 422
    assert problem["detail"].startswith("broken.png: ") and problem["errors"][0]["file"] == "broken.png"


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(client):
    big = png_bytes(np.zeros((500, 500), np.uint8))  # 250,000 pixels > the limit of 200,000; a tiny file
    response = client.post(PREDICT, files=_files([("huge.png", big)]))
    assert response.status_code == 413 and "huge.png" in response.json()["detail"]
    assert "200,000" in response.json()["detail"]
    assert "--max-pixels" in response.json()["detail"] and "INSPEKT_MAX_PIXELS" not in response.text  # the client's fix


def test_an_oversize_body_is_413(client):
    response = client.post(PREDICT, files=_files([("big.png", b"\0" * 600_000)]))
    assert response.status_code == 413 and response.json()["type"].endswith("upload-too-large")


def test_unknown_model_is_404_with_did_you_mean(client, images):
    response = client.post("/v1/models/clff/predict", files=_files(images[:1]))
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    assert 'Did you mean "clf"?' in response.json()["detail"]
    assert client.get("/v2/nothing").json()["status"] == 404


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"threshold": "0.5"}, "binary"),  # the trained model has 4 classes
        ({"min_area": "3"}, "min_area applies"),  # the form field's name, not the CLI's --min-area
        ({"threshold": "abc"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"topk": "0"}, "topk='0' must be a whole number from 1 to 1000000"),  # not "in 1..1e+06"
        ({"enhance": "clahee"}, 'Did you mean "clahe"'),
        ({"enhance": "/etc/pipeline.json"}, "not a file name"),
        ({"include": "masks"}, 'Did you mean "mask"'),
        ({"treshold": "0.5"}, 'Did you mean "threshold"'),
        ({"files": "image.png"}, "files=@image.png"),  # curl -F files=image.png forgot the @
    ],
)
def test_bad_options_are_422_naming_the_field(client, images, fields, words):
    response = client.post(PREDICT, files=_files(images[:1]), data=fields)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_malformed_requests_are_4xx_problems(client, images):
    assert client.post(PREDICT, content=b"raw", headers={"content-type": "image/png"}).status_code == 415
    assert client.post(PREDICT, data={"topk": "1"}, files=[]).status_code in (415, 422)
    wrong_field = client.post(PREDICT, files=[("image", ("a.png", images[0][1], "image/png"))])
    assert wrong_field.status_code == 422 and "'files'" in wrong_field.json()["detail"]
    broken = client.post(
        PREDICT, content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert 400 <= broken.status_code < 500
    too_many = client.post(PREDICT, files=_files([images[0]] * 21))
    assert too_many.status_code == 413 and "21" not in too_many.text and "20" in too_many.json()["detail"]


def test_enhance_topk_and_include(client, images, predictor):
    spec = "CLAHE + Denoise"
    body = client.post(
        PREDICT, files=_files(images[:2]), data={"enhance": spec, "topk": "2", "include": "embedding"}
    ).json()
    expected = predictor.predict([d for _, d in images[:2]], enhance=Pipeline.parse(spec))
    for served, want in zip(body["predictions"], expected):
        assert served["label"] == want.label and served["score"] == pytest.approx(want.score, abs=1e-5)
        assert len(served["scores"]) == 2
        assert len(served["embedding"]) == served["embedding_shape"][0]
    as_json = Pipeline.parse(spec).to_dict()
    again = client.post(PREDICT, files=_files(images[:1]), data={"enhance": str(as_json).replace("'", '"')})
    assert again.json()["predictions"][0]["score"] == pytest.approx(expected[0].score, abs=1e-5)


def test_metrics_count_requests_labels_and_batches(client, images):
    client.post(PREDICT, files=_files(images[:3]))
    text = client.get("/metrics").text
    assert 'inspekt_requests_total{method="POST",route="/v1/models/{name}/predict",status="200"}' in text
    assert 'inspekt_request_duration_seconds_bucket{le="0.25",route="/v1/models/{name}/predict"}' in text
    assert "inspekt_predictions_total{label=" in text and 'model="clf"' in text
    assert 'inspekt_batch_size_count{model="clf"}' in text
    assert "inspekt_models_loaded 1.0" in text


def _brighter(data: bytes, amount: int) -> bytes:
    array = np.asarray(Image.open(io.BytesIO(data))).astype(np.int16)
    return png_bytes(np.clip(array + amount, 0, 255).astype(np.uint8))


def test_drift_detects_a_planted_brightness_shift_and_not_a_same_source_batch(client, synth_classes):
    files = [p for folder in sorted(synth_classes.iterdir()) if folder.is_dir() for p in sorted(folder.iterdir())[-5:]]
    same = [(p.name, p.read_bytes()) for p in files]
    fields = {"permutations": "999", "checks": "properties,pixels,predictions"}
    calm = client.post("/v1/models/clf/drift", files=_files(same), data=fields)
    assert calm.status_code == 200, calm.text
    assert calm.json()["schema"] == "inspekt.drift/1" and calm.json()["drift"] is False
    shifted = client.post("/v1/models/clf/drift", files=_files([(n, _brighter(d, 70)) for n, d in same]), data=fields)
    report = shifted.json()
    assert report["drift"] is True and "brightness" in report["drifted"] and report["n_current"] == len(same)
    assert 'inspekt_drift_detected{model="clf"} 1.0' in client.get("/metrics").text
    assert client.post("/v1/models/clf/drift", files=_files(same[:1])).status_code == 422


def test_drift_on_uploads_that_share_a_file_name_equals_drift_on_named_ones(client, synth_classes):
    """Cameras and scripts often send every frame as image.jpg: each upload must still be its own image."""
    files = [p for folder in sorted(synth_classes.iterdir()) if folder.is_dir() for p in sorted(folder.iterdir())[-5:]]
    fields = {"permutations": "999", "checks": "predictions,embeddings", "seed": "3"}
    named = client.post("/v1/models/clf/drift", files=_files([(p.name, p.read_bytes()) for p in files]), data=fields)
    same = client.post(
        "/v1/models/clf/drift", files=_files([("frame.png", p.read_bytes()) for p in files]), data=fields
    )
    assert named.status_code == same.status_code == 200, same.text
    assert [(c["name"], c["p_value"]) for c in same.json()["checks"]] == [
        (c["name"], c["p_value"]) for c in named.json()["checks"]
    ]
    assert same.json()["drift"] is False


def test_api_key_guards_everything_but_the_probes(trained, images):
    app = create_app(ServeSettings(models=(f"clf={trained.bundle}",), api_key="s3cret"))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        missing = c.get("/v1/models")
        assert missing.status_code == 401 and missing.headers["content-type"] == PROBLEM
        assert "missing" in missing.json()["detail"]
        assert c.post(PREDICT, files=_files(images[:1]), headers={"X-API-Key": "guess"}).status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.post(PREDICT, files=_files(images[:1]), headers={"X-API-Key": "s3cret"}).status_code == 200


def test_drift_without_a_reference_is_409_and_predict_still_works(trained, images, tmp_path):
    bundle = tmp_path / "old"
    shutil.copytree(trained.bundle, bundle)
    (bundle / "reference.json").unlink()
    with TestClient(create_app(ServeSettings(models=(f"clf={bundle}",)))) as c:
        response = c.post("/v1/models/clf/drift", files=_files(images[:3]))
        assert response.status_code == 409 and response.json()["type"].endswith("no-drift-reference")
        assert "'clf'" in response.json()["detail"] and str(tmp_path) not in response.text  # no server paths
        assert c.get("/v1/models/clf").json()["drift_reference"] is False
        assert c.post(PREDICT, files=_files(images[:1])).status_code == 200


def test_an_app_started_again_after_shutdown_still_predicts(trained, images):
    """Shutdown stops the batchers' threads; a second start (a test fixture, a restarted server) makes new ones."""
    app = create_app(ServeSettings(models=(f"clf={trained.bundle}",)))
    for _ in range(2):
        with TestClient(app) as c:
            assert c.post(PREDICT, files=_files(images[:2])).status_code == 200


def test_cors_is_off_unless_an_origin_is_allowed(client, trained):
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options(PREDICT, headers=preflight).headers
    app = create_app(ServeSettings(models=(f"clf={trained.bundle}",), cors_origins=("https://ui.example",)))
    with TestClient(app) as c:
        allowed = c.options(PREDICT, headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://ui.example"


def test_uploads_are_not_written_to_disk(trained, images, monkeypatch):
    """Bodies over 1 MB would be spooled to temporary files by Starlette's form parser; ours stay in memory."""
    import tempfile

    opened = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        original = getattr(tempfile, name)
        monkeypatch.setattr(tempfile, name, lambda *a, _f=original, _n=name, **k: opened.append(_n) or _f(*a, **k))
    app = create_app(ServeSettings(models=(f"clf={trained.bundle}",), max_upload_mb=4))
    padding = png_bytes(np.random.default_rng(0).integers(0, 256, (700, 700, 3), np.uint8))  # ~1.5 MB, incompressible
    with TestClient(app) as c:
        response = c.post(PREDICT, files=_files([images[0], ("noise.png", padding)]))
        assert response.status_code == 200 and len(response.json()["predictions"]) == 2
        assert (
            c.post(
                "/v1/models/clf/drift",
                files=_files([images[0], ("noise.png", padding)]),
                data={"checks": "properties", "permutations": "19"},
            ).status_code
            == 200
        )
    assert len(padding) > 1_200_000 and opened == []


def test_bad_settings_fail_at_start(trained, tmp_path):
    from inspekt.errors import BundleError, ConfigError

    with pytest.raises(ConfigError, match="two models are named"):
        create_app(ServeSettings(models=(str(trained.bundle), str(trained.bundle))))
    with pytest.raises(ConfigError, match="URL"):
        create_app(ServeSettings(models=(f"a b={trained.bundle}",)))
    with pytest.raises(BundleError):
        create_app(ServeSettings(models=(str(tmp_path / "missing.inspekt"),)))
    for bad in ({"max_pixels": 0}, {"threads": 0}):
        with pytest.raises(ConfigError, match="must be at least"):
            ServeSettings(models=(str(trained.bundle),), **bad)
    with pytest.raises(ConfigError, match="'max_upload_mb': Input should be a finite number"):  # no setting is NaN/inf
        ServeSettings(models=(str(trained.bundle),), max_upload_mb=float("inf"))


# --- a real server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(trained):
    """uvicorn serving the app on a free loopback port, in a thread."""
    app = create_app(ServeSettings(models=(f"clf={trained.bundle}",), max_upload_mb=0.5, max_wait_ms=20))
    with uvicorn_thread(app) as url:
        yield url, app


def test_concurrent_requests_are_batched_and_equal_the_predictor(server, images, predictor):
    url, app = server
    expected = {name: p for (name, _), p in zip(images, predictor.predict([d for _, d in images]))}
    jobs = images * 4  # 48 requests, one image each, from 16 threads at once
    with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda item: http.post(PREDICT, files=_files([item])), jobs))
    assert all(r.status_code == 200 for r in responses)
    for (name, _), response in zip(jobs, responses):
        [served] = response.json()["predictions"]
        assert served["path"] == name
        _same(served, expected[name])
    samples = {
        s.name: s.value
        for m in app.state.inspekt.metrics.registry.collect()
        if m.name == "inspekt_batch_size"
        for s in m.samples
        if s.name.endswith(("_count", "_sum"))
    }
    batches, batched_images = samples["inspekt_batch_size_count"], samples["inspekt_batch_size_sum"]
    assert batched_images == len(jobs) and batches < len(jobs), samples  # some requests shared a model call


def test_a_streamed_body_without_length_is_cut_at_the_limit(server):
    url, _ = server
    boundary = "b0undary"

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(100):  # 100 x 64 KB = 6.4 MB, sent chunked: no Content-Length to check up front
            yield b"\0" * 65536

    response = httpx.post(
        url + PREDICT, content=body(), timeout=30, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413 and response.json()["type"].endswith("upload-too-large")


# --- the `inspekt serve` command ----------------------------------------------------------------


def _inspekt() -> str:
    return os.path.join(os.path.dirname(sys.executable), "inspekt")


def _wait_ready(url: str, proc: subprocess.Popen, **client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"inspekt serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/readyz", timeout=2, **client).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("inspekt serve did not become ready in 60 s")


@pytest.fixture
def tls_files(tmp_path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; cannot make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.slow
def test_inspekt_serve_over_https_with_an_api_key(trained, images, predictor, tls_files):
    cert, key = tls_files
    port = free_port()
    env = {**os.environ, "INSPEKT_TEST_KEY": "k-123"}
    proc = subprocess.Popen(
        [
            _inspekt(),
            "serve",
            f"clf={trained.bundle}",
            "--port",
            str(port),
            "--api-key-env",
            "INSPEKT_TEST_KEY",
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
            "--log-level",
            "warning",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, verify=ssl.create_default_context(cafile=str(cert)))
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert)), timeout=30) as http:
            assert http.post(PREDICT, files=_files(images[:1])).status_code == 401
            ok = http.post(PREDICT, files=_files(images[:2]), headers={"X-API-Key": "k-123"})
            assert ok.status_code == 200
            for served, want in zip(ok.json()["predictions"], predictor.predict([d for _, d in images[:2]])):
                _same(served, want)
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served on the HTTPS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
def test_inspekt_serve_errors_are_one_line(tmp_path, trained):
    missing = subprocess.run(
        [_inspekt(), "serve", str(tmp_path / "nope.inspekt")], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and "nope.inspekt" in missing.stderr and "Traceback" not in missing.stderr
    no_key = subprocess.run(
        [_inspekt(), "serve", str(trained.bundle), "--api-key-env", "INSPEKT_UNSET_VAR"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "INSPEKT_UNSET_VAR"},
    )
    assert no_key.returncode == 2 and "INSPEKT_UNSET_VAR" in no_key.stderr
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("not a certificate")
    bad_tls = subprocess.run(
        [_inspekt(), "serve", str(trained.bundle), "--ssl-certfile", str(not_pem), "--ssl-keyfile", str(not_pem)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert bad_tls.returncode == 2 and "cert.pem" in bad_tls.stderr and "Traceback" not in bad_tls.stderr
    bad_port = subprocess.run(
        [_inspekt(), "serve", str(trained.bundle), "--port", "70000"], capture_output=True, text=True, timeout=120
    )  # uvicorn would bind 70000 % 65536 = 4464 and say 70000
    assert bad_port.returncode == 2 and "65535" in bad_port.stderr


def test_one_failing_request_does_not_fail_its_batch(predictor):
    """Fault injection: a predictor that breaks on one request's image; the others in the batch still get theirs."""
    from inspekt.api.batching import Job, run_jobs
    from inspekt.errors import ImageLoadError

    class Breaks:
        def predict_arrays(self, images, sources, enhance=None):
            if "poison" in sources:
                raise RuntimeError("model failure")
            if "odd" in sources:
                raise ImageLoadError("odd: the model cannot take this image; send another")
            return predictor.predict_arrays(images, sources)

    image = np.full((32, 32, 3), 100, np.uint8)
    jobs = [Job([image], [name], Breaks(), key=0) for name in ("a", "poison", "b", "odd")]
    outcomes = run_jobs(jobs)
    assert [o[0].source for o in (outcomes[0], outcomes[2])] == ["a", "b"]
    assert type(outcomes[1]) is RuntimeError and "model failure" not in str(outcomes[1])  # internals stay in the log
    assert isinstance(outcomes[3], ImageLoadError)  # a library error for the input keeps its message (a 422)


# --- segmentation and anomaly models -------------------------------------------------------------


@pytest.fixture(scope="module")
def pixel_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny segmenter and a tiny anomaly model (two quick epochs each) and their datasets."""
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train

    root = tmp_path_factory.mktemp("pixel-models")
    seg = write_dataset(root / "seg", n=16, size=48, seed=4, layout="segmentation").root
    segmenter = train(
        task="segment",
        data=str(seg),
        model="tiny_unet",
        model_params={"width": 4, "depth": 3},
        epochs=2,
        imgsz=32,
        batch=8,
        augment="none",
        threads=1,
        out=str(root / "runs"),
    ).bundle
    mvtec = write_dataset(root / "mvtec", n=32, size=48, seed=5, layout="mvtec").root
    anomaly = train(
        task="anomaly",
        data=str(mvtec),
        model="ae_ssim",
        model_params={"width": 4, "latent": 16},
        epochs=2,
        imgsz=32,
        batch=8,
        threads=1,
        out=str(root / "runs"),
    ).bundle
    return {"seg": segmenter, "anom": anomaly, "seg_data": seg, "mvtec": mvtec}


def test_segmenter_and_anomaly_model_answer_with_masks_and_maps_at_the_image_size(pixel_models):
    from inspekt.io import list_images, load_image

    settings = ServeSettings(models=(f"seg={pixel_models['seg']}", f"anom={pixel_models['anom']}"))
    seg_file = list_images(pixel_models["seg_data"] / "images")[0]
    anom_files = list_images(pixel_models["mvtec"] / "test")[:4]
    with TestClient(create_app(settings)) as client:
        seg = client.post(
            "/v1/models/seg/predict", files=_files([(seg_file.name, seg_file.read_bytes())]), data={"include": "mask"}
        )
        anom = client.post(
            "/v1/models/anom/predict",
            files=_files([(p.name, p.read_bytes()) for p in anom_files]),
            data={"include": "mask,heatmap", "threshold": "0.5", "pixel_threshold": "0.6"},
        )
        drift = client.post(
            "/v1/models/anom/drift",
            files=_files([(p.name, p.read_bytes()) for p in anom_files]),
            data={"checks": "properties,pixels", "permutations": "99"},
        )
    assert seg.status_code == 200 and anom.status_code == 200 and drift.status_code == 200, drift.text
    [served] = seg.json()["predictions"]
    expected = Predictor.load(pixel_models["seg"]).predict([seg_file])[0]
    assert served["verdict"] == expected.extra["verdict"] and served["score"] == pytest.approx(expected.score, abs=1e-5)
    mask = np.array(Image.open(io.BytesIO(base64.b64decode(served["mask_png"]))))
    np.testing.assert_array_equal(mask, expected.mask)
    rows = anom.json()["predictions"]
    local = Predictor.load(pixel_models["anom"], threshold=0.5, pixel_threshold=0.6).predict(anom_files)
    assert [r["verdict"] for r in rows] == [p.extra["verdict"] for p in local]
    for row, image_file in zip(rows, anom_files):
        heat = np.array(Image.open(io.BytesIO(base64.b64decode(row["heatmap_png"]))))
        assert heat.shape == load_image(image_file, mode="keep").shape[:2]
        assert 0.0 <= row["score"] <= 1.0 and "raw_score" in row
    assert drift.json()["n_current"] == len(anom_files)


def test_a_request_pixel_budget_and_enlarging_enhancement_are_checked_before_decoding(trained):
    settings = ServeSettings(models=(f"clf={trained.bundle}",), max_pixels=200_000, max_request_pixels=200_000)
    tile = png_bytes(np.full((300, 300), 128, np.uint8))  # 90,000 pixels: under the per-image limit
    with TestClient(create_app(settings)) as client:
        three = client.post(PREDICT, files=_files([("a.png", tile), ("b.png", tile), ("c.png", tile)]))
        enlarged = client.post(PREDICT, files=_files([("a.png", tile)]), data={"enhance": "resize:scale=2"})
        shrunk = client.post(PREDICT, files=_files([("a.png", tile)]), data={"enhance": "resize:scale=0.5"})
        drift = client.post(
            "/v1/models/clf/drift",
            files=_files([("a.png", tile), ("b.png", tile), ("c.png", tile)]),
            data={"checks": "properties", "permutations": "99"},
        )
    assert three.status_code == 200
    body = three.json()
    assert [p["path"] for p in body["predictions"]] == ["a.png", "b.png"]
    [refused] = body["skipped"]
    assert refused["file"] == "c.png" and refused["status"] == 413 and "--max-request-pixels" in refused["detail"]
    assert enlarged.status_code == 413 and "a.png" in enlarged.json()["detail"]  # 4 x 90,000 > 200,000 after resize
    assert shrunk.status_code == 200
    assert drift.status_code == 200 and drift.json()["n_current"] == 2  # the drift endpoint keeps the same budget
    assert [k["path"] for k in drift.json()["skipped"]["current"]] == ["c.png"]


def test_pipeline_growth_is_the_largest_enlargement_along_the_way():
    assert Pipeline.parse("clahe").growth() == 1.0
    assert Pipeline.parse("resize:scale=2 + median").growth() == pytest.approx(4.0)
    assert Pipeline.parse("resize:scale=3 + resize:scale=0.5").growth() == pytest.approx(9.0)
    assert Pipeline.parse("resize:scale=0.5").growth() == 1.0


def test_head_healthz_and_drift_skips_are_counted(client, images):
    assert client.head("/healthz").status_code == 200
    before = _skipped_total(client)
    response = client.post(
        "/v1/models/clf/drift",
        files=_files([*images[:4], ("broken.png", b"not an image")]),
        data={"checks": "properties", "permutations": "99"},
    )
    assert response.status_code == 200 and response.json()["n_current"] == 4
    assert _skipped_total(client) == before + 1


def _skipped_total(client) -> float:
    line = next(
        (
            line
            for line in client.get("/metrics").text.splitlines()
            if line.startswith('inspekt_skipped_files_total{model="clf"}')
        ),
        None,
    )
    return 0.0 if line is None else float(line.rsplit(" ", 1)[1])
