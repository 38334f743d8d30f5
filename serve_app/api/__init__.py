"""HTTP surfaces of faceserve. REST API v1: `build_rest_app`."""

from serve_app.api.rest import build_rest_app

__all__ = ["build_rest_app"]
