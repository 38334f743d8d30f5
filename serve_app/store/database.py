"""Engine construction and schema migrations (Alembic, configured in code)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import InterfaceError, OperationalError

from serve_app.errors import DatabaseUnavailable
from serve_app.store.collection_schema import CONTROL_SCHEMA, upgrade_collection_schemas

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit key: serialises concurrent `migrate()` calls (several replicas starting).
_MIGRATION_LOCK_KEY = 0x66616365736572  # "faceser"


def create_engine_for(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """An engine for the service: pre-pinged pooled connections (a restarted server is fine).

    Each Ray replica gets its own pool, so keep it small: replicas x (pool + overflow) must
    stay under the server's max_connections (100 by default).
    """
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
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


def migrate(engine: Engine) -> None:
    """Bring the control schema to the newest Alembic revision, then every collection schema.

    Idempotent and safe to call from several processes at once (an advisory lock orders them).
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {CONTROL_SCHEMA}"))
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        upgrade_collection_schemas(conn)


def alembic_config() -> Config:
    """Alembic's configuration, built in code: no alembic.ini is needed at runtime."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def _json_default(value: Any) -> Any:
    # Detections often carry numpy scalars and arrays; store them as plain JSON numbers.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
