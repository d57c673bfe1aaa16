"""``create_app``: the FastAPI service over loaded models (what ``inspekt serve`` runs)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from pydantic import model_validator

from inspekt._version import __version__
from inspekt.api import problems
from inspekt.api.auth import ApiKeyMiddleware
from inspekt.api.batching import IN_FLIGHT
from inspekt.api.docs import install_docs
from inspekt.api.limits import PixelBudget
from inspekt.api.metrics import Metrics, MetricsMiddleware
from inspekt.api.models import ServedModel, load_models
from inspekt.api.problems import Problem
from inspekt.api.routes import router
from inspekt.config import Settings
from inspekt.drift.types import CHECKS, DriftConfig
from inspekt.errors import ConfigError, did_you_mean


class ServeSettings(Settings):
    """How the service runs.

    Attributes:
        models: ``PATH`` or ``NAME=PATH`` per model bundle.
        api_key: when set, every request but /healthz and /readyz needs ``X-API-Key: <key>``.
        max_upload_mb: request body limit (checked before and while the body is read).
        max_files: files per request at most.
        max_request_pixels: the pixels all images of one request may have together (after enhancement);
            the files past it are refused from their headers, before decoding.
        max_inflight_pixels: the pixels all requests being served may hold at once (their images times
            their enhancement's working copies, from the headers); requests past it wait their turn.
        request_timeout: seconds a request may take once its body has arrived, waiting included; then
            503, and its work stops.
        body_timeout: seconds a request's body may take to arrive; then 408.
        max_enhance_seconds: the CPU seconds one request's enhancement may be estimated to take.
        max_pixels: images with more pixels are refused from their header, before decoding
            (None: ``INSPEKT_MAX_PIXELS``, else inspekt's default of 100 million).
        max_batch: images per model call at most (micro-batching).
        max_wait_ms: how long a micro-batch waits for more concurrent requests.
        threads: inference threads per model call (None: ``default_threads()``, so the event loop keeps a
            core: ONNX Runtime's default spins on every core and starves it).
        cors_origins: origins allowed to call from a browser (none by default: CORS off).
        drift_checks: the drift checks run when a request does not name them (the domain classifier
            costs seconds per request; properties and pixels take well under a second).
    """

    models: tuple[str, ...]
    api_key: str | None = None
    max_upload_mb: float = 20.0
    max_files: int = 64
    max_pixels: int | None = 50_000_000
    max_request_pixels: int = 100_000_000
    max_inflight_pixels: int = 150_000_000
    request_timeout: float = 60.0
    body_timeout: float = 30.0
    max_enhance_seconds: float = 10.0
    max_batch: int = 32
    max_wait_ms: float = 5.0
    threads: int | None = None
    cors_origins: tuple[str, ...] = ()
    drift_checks: tuple[str, ...] = CHECKS

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        for name, value, low in (
            ("max_upload_mb", self.max_upload_mb, 0.001),
            ("max_files", self.max_files, 1),
            ("max_batch", self.max_batch, 1),
            ("max_wait_ms", self.max_wait_ms, 0),
            ("max_pixels", 1 if self.max_pixels is None else self.max_pixels, 1),
            ("max_request_pixels", self.max_request_pixels, 1),
            ("max_inflight_pixels", self.max_inflight_pixels, 1),
            ("request_timeout", self.request_timeout, 0.1),
            ("body_timeout", self.body_timeout, 0.1),
            ("max_enhance_seconds", self.max_enhance_seconds, 0),
            ("threads", 1 if self.threads is None else self.threads, 1),
        ):
            if not low <= value < float("inf"):  # inf MB cannot become a byte count
                raise ConfigError(f"--{name.replace('_', '-')} {value} must be at least {low:g}")
        if self.max_request_pixels > self.max_inflight_pixels:
            raise ConfigError(
                f"--max-request-pixels {self.max_request_pixels:,} is more than --max-inflight-pixels "
                f"{self.max_inflight_pixels:,}: no request that large could run; lower the first or raise the second"
            )
        DriftConfig(checks=self.drift_checks)  # names checked at start, with a did-you-mean
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("the API key is empty; set the environment variable to a long random string")
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


@dataclass
class ServiceState:
    """What the routes share: settings, loaded models, metrics, readiness."""

    settings: ServeSettings
    models: dict[str, ServedModel]
    metrics: Metrics
    ready: bool = False
    notes: list[str] = field(default_factory=list)
    budget: PixelBudget = None  # decoded pixels in flight, server-wide (made from the settings)
    heavy_lane: ThreadPoolExecutor = None  # one thread decodes and enhances the large requests, in turn

    def __post_init__(self) -> None:
        self.budget = PixelBudget(self.settings.max_inflight_pixels)
        self.heavy_lane = ThreadPoolExecutor(1, thread_name_prefix="inspekt-heavy")

    def model(self, name: str) -> ServedModel:
        """The model called ``name``.

        Raises:
            Problem: 404 with the served names and a did-you-mean.
        """
        if name not in self.models:
            raise Problem(
                404,
                "unknown-model",
                f"no model named {name!r}.{did_you_mean(name, self.models)} "
                f"Served models: {', '.join(sorted(self.models))} (GET /v1/models lists them)",
            )
        return self.models[name]


def default_threads() -> int:
    """Inference threads per model call when not given: the CPUs but one (for the event loop), shared
    by the batches a model runs at once; at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, (cpus - 1) // IN_FLIGHT)


def _one_opencv_thread() -> None:
    """OpenCV runs each call on every core by default; in the service the parallelism comes from the
    requests, and one image's denoising must not take the cores the other requests are served on."""
    import cv2

    cv2.setNumThreads(1)


def create_app(settings: ServeSettings) -> FastAPI:
    """Load and warm up the models, then build the app (errors in a bundle surface here, before serving).

    Args:
        settings: models and limits.

    Returns:
        The FastAPI app; ``app.state.inspekt`` is its ``ServiceState``.

    Raises:
        ConfigError: bad settings or model names.
        BundleError: a bundle cannot be loaded.
    """
    metrics = Metrics()
    _one_opencv_thread()
    models = load_models(
        list(settings.models),
        threads=settings.threads or default_threads(),
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        on_batch=lambda name, n: metrics.batch_size.labels(name).observe(n),
    )
    metrics.models.set(len(models))
    state = ServiceState(settings, models, metrics, ready=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.ready = True
        yield
        state.ready = False  # for in-process users; uvicorn has closed its listener by the time this runs
        for model in models.values():
            model.close()
        state.heavy_lane.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="inspekt",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # install_docs: the pages from local files, not a CDN
        redoc_url=None,
        description="Predict with inspekt model bundles and check incoming images for drift. "
        "Errors are RFC 9457 problem documents.",
    )
    app.state.inspekt = state
    problems.install(app)
    app.include_router(router)
    install_docs(app)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, key=settings.api_key)
    if settings.cors_origins:  # outside the key check, so a refused browser call still gets CORS headers
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: refused requests are counted too
    return app
