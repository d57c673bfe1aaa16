"""`inspekt serve` documents itself offline (issue 19): /docs and /redoc load every script, style sheet
and icon from the service itself (FastAPI's defaults come from a CDN and Google Fonts: blank offline)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from fastapi.testclient import TestClient

from inspekt.api import ServeSettings, create_app

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']|(https?://[^\s"'<>)]+)""")


@pytest.fixture(scope="module")
def client(trained):
    with TestClient(create_app(ServeSettings(models=(f"clf={trained.bundle}",)))) as test_client:
        yield test_client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(client, page):
    answer = client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    found = [next(g for g in m.groups() if g) for m in ASSET.finditer(answer.text)]
    remote = [url for url in found if url.startswith(("http://", "https://", "//"))]
    assert not remote, f"{page} loads from the internet: {remote}"
    assets = [url for url in found if url.startswith("/")]
    assert any(url.endswith(".js") for url in assets) and "/openapi.json" in answer.text
    assets.append("/openapi.json")
    for url in assets:
        fetched = client.get(url)
        assert fetched.status_code == 200, url
        assert len(fetched.content) > 100, url


def test_the_swagger_bundle_is_served_as_javascript(client):
    [script] = re.findall(r"src=['\"]([^'\"]+\.js)['\"]", client.get("/docs").text)
    answer = client.get(script)
    assert "javascript" in answer.headers["content-type"] and b"SwaggerUIBundle" in answer.content
