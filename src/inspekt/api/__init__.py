"""The REST API (``inspekt serve``): FastAPI over the one Predictor and the drift engine.

    from inspekt.api import ServeSettings, create_app
    app = create_app(ServeSettings(models=("models/surface-classifier.inspekt",)))

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart, prometheus-client).
"""

from inspekt.api.app import ServeSettings, ServiceState, create_app

__all__ = ["ServeSettings", "ServiceState", "create_app"]
