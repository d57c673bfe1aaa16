"""The optional API key: every request but the health probes needs ``X-API-Key``."""

from __future__ import annotations

import hmac

from inspekt.api.problems import problem_response

HEADER = "x-api-key"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # orchestrators probe these without credentials


class ApiKeyMiddleware:
    """Answers 401 (a problem document) unless the request carries the key.

    Args:
        app: the ASGI app to protect.
        key: the expected key.
    """

    def __init__(self, app, key: str):
        self.app, self._key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)  # OPTIONS: CORS preflights carry no credentials
            return
        given = next((v for k, v in scope["headers"] if k == HEADER.encode()), b"")
        if hmac.compare_digest(given, self._key):  # constant time: no key guessing by timing
            await self.app(scope, receive, send)
            return
        detail = (
            "the X-API-Key header is missing" if not given else "the X-API-Key header is wrong"
        ) + "; send the key the server was started with (--api-key-env)"
        response = problem_response(401, "unauthorized", detail, headers={"WWW-Authenticate": "ApiKey"})
        await response(scope, receive, send)
