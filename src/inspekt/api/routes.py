"""The endpoints: thin routes over the library (Predictor, drift engine) and the service state."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from inspekt.api.batching import Job
from inspekt.api.drift import drift_config, run_drift
from inspekt.api.limits import ClientGone, charge, is_heavy, within
from inspekt.api.options import INCLUDES, PredictOptions, render
from inspekt.api.problems import MEDIA_TYPE, Problem, problem_body
from inspekt.api.uploads import decode_all, header_pixels, read_form
from inspekt.deadline import Deadline
from inspekt.drift.report import to_dict
from inspekt.results import json_safe

router = APIRouter()


class JSONOut(JSONResponse):
    """Strict JSON (``results.json_safe``: numpy values as plain ones, a non-finite number as null), the
    same conversion as the CLI's ``--json``."""

    def render(self, content: Any) -> bytes:
        return json.dumps(json_safe(content), default=str, allow_nan=False, separators=(",", ":")).encode()


def _problems(*statuses: int) -> dict[int | str, dict]:
    doc = {
        "content": {
            MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                    "required": ["type", "title", "status", "detail"],
                }
            }
        }
    }
    return {s: {"description": problem_body(s, "x", "")["title"]} | doc for s in statuses}


def _form_body(fields: dict[str, dict]) -> dict:
    """The OpenAPI request body of a multipart endpoint (parsed by ``uploads.read_form``, not by FastAPI)."""
    files = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "minItems": 1,
        "description": "one or more image files (field name `files`)",
    }
    schema = {"type": "object", "required": ["files"], "properties": {"files": files} | fields}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


PREDICT_BODY = _form_body(
    {
        "threshold": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "binary classify: positive-class probability; segment: pixel probability; "
            "anomaly: normalised image score",
        },
        "pixel_threshold": {"type": "number", "minimum": 0, "maximum": 1, "description": "anomaly: pixel decision"},
        "min_area": {"type": "integer", "minimum": 0, "description": "segment / anomaly: smallest region in pixels"},
        "enhance": {
            "type": "string",
            "description": 'preset ("CLAHE + Denoise"), "clahe:clip_limit=3 + median", or a pipeline\'s JSON text',
        },
        "topk": {"type": "integer", "minimum": 1, "description": "classify: keep the k best scores"},
        "include": {"type": "string", "description": f"comma-separated arrays to add: {', '.join(INCLUDES)}"},
    }
)
DRIFT_BODY = _form_body(
    {
        "alpha": {"type": "number", "minimum": 1e-6, "maximum": 0.5},
        "permutations": {"type": "integer", "minimum": 19, "maximum": 5000},
        "checks": {
            "type": "string",
            "description": "comma-separated: properties, pixels, domain, predictions, embeddings",
        },
        "min_effect": {"type": "number", "minimum": 0, "maximum": 100},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    }
)


@router.get("/healthz", tags=["health"], summary="Liveness: the process answers")
@router.head("/healthz", include_in_schema=False)  # load balancers often probe with HEAD
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz", tags=["health"], summary="Readiness: every model is loaded and warmed up", responses=_problems(503)
)
async def readyz(request: Request) -> Response:
    state = request.app.state.inspekt
    if not state.ready:
        return JSONOut(
            problem_body(503, "not-ready", "the service is starting or stopping"), 503, media_type=MEDIA_TYPE
        )
    return JSONOut({"status": "ready", "models": sorted(state.models)})


@router.get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics (text exposition format)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    state = request.app.state.inspekt
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


@router.get("/v1/models", tags=["models"], summary="The served models' cards")
async def list_models(request: Request) -> dict:
    return {"models": [m.summary for m in request.app.state.inspekt.models.values()]}


@router.get("/v1/models/{name}", tags=["models"], summary="One model's card", responses=_problems(404))
async def get_model(name: str, request: Request) -> dict:
    return request.app.state.inspekt.model(name).summary


@router.post(
    "/v1/models/{name}/predict",
    tags=["predict"],
    openapi_extra=PREDICT_BODY,
    summary="Predict uploaded images (micro-batched with concurrent requests)",
    responses=_problems(400, 404, 413, 415, 422),
)
async def predict(name: str, request: Request) -> Response:
    state = request.app.state.inspekt
    model, settings = state.model(name), state.settings
    with model.batcher.incoming():
        form = await read_form(
            request, max_bytes=settings.max_upload_bytes, max_files=settings.max_files, timeout=settings.body_timeout
        )
        options = PredictOptions.parse(form.fields, model.predictor)
        if not form.files:
            raise Problem(422, "no-files", "the request has no files; send images in the field 'files'")
    # submitted after leaving incoming(): a forming batch waits for the others on their way, not for itself
    pixels = [header_pixels(upload) for upload in form.files]
    amount = charge(
        pixels,
        options.enhance,
        budget=state.budget,
        request_cap=settings.max_request_pixels,
        max_seconds=settings.max_enhance_seconds,
    )
    deadline = Deadline(settings.request_timeout, "the server's request timeout (--request-timeout)")
    errors: list[dict] = []

    def prepare(job: Job) -> None:  # in a worker thread, never on the event loop
        decoded, found = decode_all(
            form.files,
            settings.max_pixels,
            budget=settings.max_request_pixels,
            growth=options.enhance.growth() if options.enhance else 1.0,
            deadline=deadline,
        )
        enhance = options.enhance or (lambda image, deadline: image)
        job.sources, job.images = [n for n, _ in decoded], [enhance(a, deadline) for _, a in decoded]
        errors.extend(found)

    job = Job([], [], options.predictor, options.key, size=len(form.files), prepare=prepare, deadline=deadline)
    heavy = is_heavy(pixels, options.enhance)

    async def work() -> list:
        try:
            if heavy:  # decoded and enhanced in the heavy lane: the model's workers stay free for small requests
                await asyncio.get_running_loop().run_in_executor(state.heavy_lane, prepare, job)
                job.prepare = None
            return await model.batcher.predict(job)
        finally:
            state.budget.release(amount)  # when the work has ended, not when the client gave up on it

    try:
        if not state.budget.try_acquire(amount):  # the usual case takes no task and no poll
            await within(state.budget.acquire(amount), request, deadline)
        running = asyncio.ensure_future(work())
        running.add_done_callback(_consume)  # a request given up on still ends (Cancelled): nothing to log
        predictions = await within(asyncio.shield(running), request, deadline)
    except ClientGone:
        return Response(status_code=499)  # nobody reads it; the work stopped at its next check
    return await _answer(name, state, options, predictions, errors)


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


async def _answer(name: str, state, options: PredictOptions, predictions: list, errors: list[dict]) -> Response:
    if not predictions:
        state.metrics.skipped.labels(name).inc(len(errors))
        status = 413 if all(e["status"] == 413 for e in errors) else 422
        more = f" (and {len(errors) - 1} more unreadable file(s))" if len(errors) > 1 else ""
        raise Problem(status, "no-readable-image", f"{errors[0]['file']}: {errors[0]['detail']}{more}", errors=errors)
    state.metrics.observe_predictions(name, predictions)
    state.metrics.skipped.labels(name).inc(len(errors))

    def answer() -> Response:
        version = state.models[name].summary.get("version")
        body = {"model": name, "model_version": version, "predictions": [render(p, options) for p in predictions]}
        return JSONOut(body | {"skipped": errors})

    if {"mask", "heatmap"} & set(options.include):  # PNG-encoding a 12 MP map takes ~1 s: not on the event loop
        return await run_in_threadpool(answer)
    return answer()


@router.post(
    "/v1/models/{name}/drift",
    tags=["drift"],
    openapi_extra=DRIFT_BODY,
    summary="Check a batch of images for drift against the model's reference profile",
    responses=_problems(400, 404, 409, 413, 415, 422),
)
async def drift(name: str, request: Request) -> Response:
    state = request.app.state.inspekt
    model, settings = state.model(name), state.settings
    if model.reference is None:
        raise Problem(
            409,
            "no-drift-reference",
            f"model {name!r} has no drift reference (its bundle has no usable "
            "reference.json; bundles trained with a current inspekt carry one): ask the server's operator "
            "to serve a retrained bundle; GET /v1/models shows drift_reference for each model",
        )
    form = await read_form(
        request, max_bytes=settings.max_upload_bytes, max_files=settings.max_files, timeout=settings.body_timeout
    )
    config = drift_config(form.fields, settings.drift_checks)
    if len(form.files) < 2:
        raise Problem(
            422,
            "too-few-images",
            f"drift needs at least 2 images, got {len(form.files)}; send a batch in the field 'files'",
        )
    pixels = [header_pixels(u) for u in form.files]
    amount = charge(pixels, None, budget=state.budget, request_cap=settings.max_request_pixels, max_seconds=0)
    async with model.drift_lock:  # one drift check per model at a time: each can keep a core busy for seconds
        await state.budget.acquire(amount)
        try:
            result = await run_in_threadpool(
                run_drift, model, form.files, config, settings.max_pixels, settings.max_request_pixels
            )
        finally:
            state.budget.release(amount)
    state.metrics.observe_drift(name, result)
    state.metrics.skipped.labels(name).inc(len(result.skipped_current))
    return JSONOut(to_dict(result))


# The router tries its routes in order for every request: the prediction route, the one under load,
# goes first (it was seventh; each route tried costs the event loop ~10 us of matching per request).
router.routes.sort(key=lambda route: getattr(route, "path", "") != "/v1/models/{name}/predict")
