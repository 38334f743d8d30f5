"""Engine construction, and PostgreSQL outages as 503s (schema upgrades: `versions.py`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import InterfaceError, OperationalError

from serve_app.errors import DatabaseUnavailable

T = TypeVar("T")


def create_engine_for(
    url: str, *, pool_size: int = 5, max_overflow: int = 5, pre_ping: bool = True
) -> Engine:
    """An engine for the service: pre-pinged pooled connections (a restarted server is fine).

    Each Ray replica gets its own pool, so keep it small: replicas x (pool + overflow) must
    stay under the server's max_connections (100 by default).
    """
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        json_serializer=partial(json.dumps, default=_json_default),
        connect_args={"application_name": "faceserve", "connect_timeout": 10},
    )


def outages_as_unavailable(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`, with PostgreSQL not answering (a lost or refused connection,
    a server shutting down) turned into DatabaseUnavailable: a 503 to retry, not a 500."""
    try:
        return call(*args, **kwargs)
    except (OperationalError, InterfaceError) as err:
        raise DatabaseUnavailable(
            "the database did not answer (it may be restarting); retry in a few seconds"
        ) from err


def _json_default(value: Any) -> Any:
    # Detections often carry numpy scalars and arrays; store them as plain JSON numbers.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
