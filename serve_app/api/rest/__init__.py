"""REST API v1 on FastAPI: one router per resource over the service layer.

Each route validates its request with a pydantic model (`models.py`), calls one service
method and returns a response model; the OpenAPI document and the interactive `/docs` page
(Swagger UI, served from the `fastapi-offline` package: no CDN) are generated from the same
models. Errors are the service's exceptions mapped to `{"error": {"code", "message"}}`.
"""

from serve_app.api.rest.app import build_rest_app

__all__ = ["build_rest_app"]
