"""The SQL tables of linkage jobs (SQLAlchemy 2 typed ORM), on veclink's one `Base`.

`veclink.linkage.store.LinkageStore` reads and writes them; ``create_tables(engine)``
creates them (and only them) in any database (the service catalog's or another).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from veclink.sql import Base, utcnow
from veclink.sql import create_tables as create_row_tables


class JobRow(Base):
    __tablename__ = "veclink_linkage_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str] = mapped_column(String(32), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    #: the LinkageSpec as JSON
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: where the tables came from (paths / names), for people reading the job list
    left_source: Mapped[str] = mapped_column(String(1024), default="")
    right_source: Mapped[str] = mapped_column(String(1024), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PairRow(Base):
    __tablename__ = "veclink_linkage_pairs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("veclink_linkage_jobs.id", ondelete="CASCADE"), index=True
    )
    left_id: Mapped[str] = mapped_column(String(512))
    right_id: Mapped[str] = mapped_column(String(512))
    score: Mapped[float] = mapped_column(Float)
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)


class EntityRow(Base):
    __tablename__ = "veclink_linkage_entities"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("veclink_linkage_jobs.id", ondelete="CASCADE"), index=True
    )
    #: ``left`` / ``right`` for link jobs, ``left`` for dedupe
    side: Mapped[str] = mapped_column(String(8))
    record_id: Mapped[str] = mapped_column(String(512))
    entity_id: Mapped[str] = mapped_column(String(600), index=True)


class MatcherPartRow(Base):
    """One chunk of one named part of a job's matcher state."""

    __tablename__ = "veclink_linkage_matcher_parts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("veclink_linkage_jobs.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(256))
    #: chunk number within the part (parts are cut into MATCHER_CHUNK bytes)
    chunk: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MatchLogRow(Base):
    """A record that `Match` assigned, in order, so a rebuilt matcher can replay it."""

    __tablename__ = "veclink_linkage_match_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("veclink_linkage_jobs.id", ondelete="CASCADE"), index=True
    )
    record_id: Mapped[str] = mapped_column(String(512))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


def create_tables(engine: Engine) -> None:
    """Create the linkage tables if they do not exist."""
    create_row_tables(engine, (JobRow, PairRow, EntityRow, MatcherPartRow, MatchLogRow))
