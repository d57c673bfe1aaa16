"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every error the service returns has ``type``, ``title``, ``status`` and ``detail``; a client mistake is
a 4xx that says what was wrong and how to fix it, never a 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inspekt.errors import BundleError, ConfigError, ImageLoadError, InspektError

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://inspekt.dev/problems/"  # a stable identifier; the docs list every type (docs/api.md)
log = logging.getLogger("inspekt.api")


class Problem(Exception):
    """An error to send as a problem document.

    Args:
        status: the HTTP status.
        slug: the short problem type (``unknown-model``, ``upload-too-large`` ...).
        detail: what went wrong for this request, and the fix.
        **extra: extension members (e.g. ``errors`` per file).
    """

    def __init__(self, status: int, slug: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.slug, self.detail, self.extra = status, slug, detail, extra


def problem_body(status: int, slug: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The JSON document of one problem."""
    return {"type": TYPE_BASE + slug, "title": HTTPStatus(status).phrase, "status": status, "detail": detail} | extra


def problem_response(
    status: int, slug: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem document as a response."""
    return JSONResponse(problem_body(status, slug, detail, **extra), status, headers=headers, media_type=MEDIA_TYPE)


# A user-caused library error maps to the status a client should see.
_LIBRARY_STATUS = (
    (ImageLoadError, 422, "bad-image"),
    (ConfigError, 422, "bad-parameter"),
    (BundleError, 500, "bad-bundle"),
    (InspektError, 422, "invalid-request"),
)


async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
    return problem_response(exc.status, exc.slug, exc.detail, **exc.extra)


async def _on_inspekt_error(request: Request, exc: InspektError) -> JSONResponse:
    status, slug = next((s, t) for kind, s, t in _LIBRARY_STATUS if isinstance(exc, kind))
    if status >= 500:  # a broken bundle on the server is the operator's problem, not the client's
        log.error("server-side error on %s: %s", request.url.path, exc)
    return problem_response(status, slug, str(exc))


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    slugs = {404: "not-found", 405: "method-not-allowed"}
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no endpoint at {request.url.path}; see GET /docs or docs/api.md for the endpoints"
    elif exc.status_code == 405:
        headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
        allowed = headers.get("allow", "another method")
        detail = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    return problem_response(
        exc.status_code, slugs.get(exc.status_code, "http-error"), detail, headers=getattr(exc, "headers", None)
    )


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
    first = errors[0] if errors else {"where": "request", "message": "invalid"}
    return problem_response(422, "invalid-request", f"{first['where']}: {first['message']}", errors=errors)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return problem_response(
        500, "internal-error", "the server failed on this request; the error is in the server log, please report it"
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(InspektError, _on_inspekt_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
