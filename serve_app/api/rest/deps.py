"""What routes take from the app: the services and the metrics (set on `app.state`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serve_app.api.metrics import ApiMetrics
from serve_app.service.services import Services


def _services(request: Request) -> Services:
    return request.app.state.services


def _metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


ServicesDep = Annotated[Services, Depends(_services)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
