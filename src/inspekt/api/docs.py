"""The API's documentation pages, served from local files: FastAPI's own ``/docs`` and ``/redoc`` load
Swagger UI and ReDoc from a CDN (and ReDoc fonts from Google), so offline they are blank pages.

The assets come from the ``fastapi-offline`` package (Swagger UI 5 and ReDoc, MIT; the serve extra
pins it). Without it ``/docs`` is a short local page pointing at ``/openapi.json``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def _asset_folder() -> str | None:
    try:
        folder = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return str(folder) if folder.is_dir() else None


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` (Swagger UI), its OAuth2 redirect and ``/redoc`` to ``app`` (made with
    ``docs_url=None, redoc_url=None``), every script, style sheet and icon from ``ASSETS``."""
    folder = _asset_folder()
    title, spec = f"{app.title} API", app.openapi_url or "/openapi.json"
    if folder is None:

        @app.get("/docs", include_in_schema=False)
        async def bare_docs() -> HTMLResponse:
            return HTMLResponse(
                f"<!doctype html><title>{title}</title><h1>{title}</h1><p>The interactive page needs the "
                "<code>fastapi-offline</code> package (<code>pip install 'inspekt[serve]'</code>). "
                f'The OpenAPI description: <a href="{spec}">{spec}</a>.</p>'
            )

        return
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=spec,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=redirect,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=spec,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
