"""The SQL catalog: collections and records (external id <-> int64 vector id, text, payload).

SQLAlchemy 2 typed ORM. SQLite file by default (WAL journal, synchronous FULL), PostgreSQL
by URL. Vectors themselves live in the collection's index; the catalog maps ids and keeps
what a hit returns besides its score.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from veclink.sql import Base, create_tables, make_engine, utcnow


class CollectionRow(Base):
    __tablename__ = "veclink_collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    #: served model name at creation ("" for vectors-only collections)
    model: Mapped[str] = mapped_column(String(256), default="")
    #: the encoder spec JSON the collection was built with (None: vectors only)
    encoder_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    dim: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16))
    index_kind: Mapped[str] = mapped_column(String(32))
    index_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: directory name of the index under <data_dir>/indexes (unique per creation)
    index_dir: Mapped[str] = mapped_column(String(64), unique=True)
    #: next int64 vector id to hand out; ids are never reused within a collection
    next_vector_id: Mapped[int] = mapped_column(BigInteger, default=0)
    #: stamp of the last committed write; the index rolls back writes stamped above it
    write_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: 0: one index in the server process; N >= 1: N shards (Ray actors in cluster mode)
    shards: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the shard map: the Ray node id holding each shard's disk (None: not placed by Ray)
    shard_nodes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RecordRow(Base):
    __tablename__ = "veclink_records"
    __table_args__ = (
        UniqueConstraint("collection_id", "external_id", name="uq_record_external_id"),
        UniqueConstraint("collection_id", "vector_id", name="uq_record_vector_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("veclink_collections.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str] = mapped_column(String(512))
    vector_id: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


def open_catalog(url: str) -> tuple[Engine, sessionmaker]:
    """Connect and create the catalog tables if they do not exist."""
    engine = make_engine(url)
    create_tables(engine, (CollectionRow, RecordRow))
    _add_missing_columns(engine)
    return engine, sessionmaker(engine, expire_on_commit=False)


def _add_missing_columns(engine: Engine) -> None:
    """Bring a catalog created by an earlier version up to date (columns added since)."""
    have = {c["name"] for c in inspect(engine).get_columns(CollectionRow.__tablename__)}
    added = {
        "write_version": "BIGINT NOT NULL DEFAULT 0",
        "shards": "INTEGER NOT NULL DEFAULT 0",
        "shard_nodes": "JSON",
    }
    for column, ddl in added.items():
        if column not in have:
            with engine.begin() as conn:
                conn.execute(
                    text(f"ALTER TABLE {CollectionRow.__tablename__} ADD COLUMN {column} {ddl}")
                )
