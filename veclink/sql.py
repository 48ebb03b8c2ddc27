"""The one SQLAlchemy declarative base of veclink's tables, and how an engine is opened.

The catalog (`veclink.service.catalog`) and the linkage tables (`veclink.linkage.store_rows`)
both declare their rows on `Base`; each creates only its own tables (`create_tables`), so
the linkage tables can live in the catalog's database or in any other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every veclink table."""


def utcnow() -> dt.datetime:
    """Now, timezone-aware (the default of every timestamp column)."""
    return dt.datetime.now(dt.UTC)


def create_tables(engine: Engine, rows: Iterable[type[Base]]) -> None:
    """Create the tables of ``rows`` (row classes) that do not exist yet, and only those."""
    Base.metadata.create_all(engine, tables=[row.__table__ for row in rows])  # type: ignore[misc]


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL mode, synchronous FULL and foreign keys on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
