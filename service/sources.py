"""Where a linkage job may read its tables on the server: locked down, off by default.

A job's ``sql`` and ``path`` sources run with the server's own access, so neither is allowed
until the settings say so (``[sources]``):

- ``sql``: only with ``sources.sql_url`` set, and only on that database. The query must be
  exactly one ``SELECT`` (checked with sqlparse, and again by the driver: PostgreSQL runs it
  as a prepared statement, sqlite3 refuses a second statement). It runs on a fresh
  connection in a read-only transaction (PostgreSQL ``SET TRANSACTION READ ONLY``; SQLite
  opened ``mode=ro`` with ``PRAGMA query_only``) under a statement timeout, and returns at
  most ``sources.sql_max_rows`` rows. A PostgreSQL superuser is refused: it can read server
  files (``pg_read_file``) whatever the transaction mode. Connect as a role that can only
  read the tables jobs need.
- ``path``: only under ``sources.path_dirs``; the path is resolved (symlinks, ``..``) before
  it is compared, so a link or ``..`` cannot lead outside.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

from veclink.linkage import Table
from veclink.linkage.tables import table_from_query
from veclink.service.settings import SourceSettings

from veclink.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from veclink.validation import quote

#: longest SQL text a job may send (parsing is linear, but not free)
MAX_SQL_CHARS = 100_000
#: PostgreSQL SQLSTATEs that are the caller's doing, not the server's
_PG_TIMEOUT = "57014"  # query_canceled (statement_timeout)
_PG_DENIED = ("42501", "25006")  # insufficient_privilege, read_only_sql_transaction


def check_query(sql: str, field: str) -> str:
    """The one ``SELECT`` statement in ``sql`` (a trailing ``;`` dropped), else an error.

    Raises:
        InvalidArgument: too long, empty, several statements, or not a plain ``SELECT``
            (a ``WITH`` whose main statement or any part changes data counts as a write).
    """
    import sqlparse
    from sqlparse import tokens

    if len(sql) > MAX_SQL_CHARS:
        raise InvalidArgument(f"{field} is longer than {MAX_SQL_CHARS} characters", field=field)
    if "\x00" in sql:
        raise InvalidArgument(f"{field} contains a NUL character", field=field)
    statements = [s for s in sqlparse.parse(sql) if str(s).strip().strip(";").strip()]
    if len(statements) != 1:
        raise InvalidArgument(
            f"{field} must be exactly one SELECT statement, got {len(statements)}", field=field
        )
    statement = statements[0]
    writes = sorted(
        {
            t.normalized.upper()
            for t in statement.flatten()
            if t.ttype in (tokens.DDL, tokens.DML) and t.normalized.upper() != "SELECT"
        }
    )
    if statement.get_type() != "SELECT" or writes:
        what = ", ".join(writes) or statement.get_type()
        raise InvalidArgument(
            f"{field} must be a read-only SELECT statement (found {what})", field=field
        )
    return str(statement).strip().rstrip(";").strip()


def run_query(
    url: str, sql: str, *, timeout_s: float, max_rows: int, field: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement read-only on ``url``: column names and at most ``max_rows`` rows.

    This is the second line of defence behind `check_query`: whatever the text, the
    connection cannot write.

    Raises:
        PermissionDenied: the statement tried to write or to use something the role may
            not; or the PostgreSQL role is a superuser.
        ResourceExhausted: more than ``max_rows`` rows, or longer than ``timeout_s``.
        InvalidArgument: any other SQL error (syntax, unknown table...).
        FailedPrecondition: the database cannot be reached or opened.
    """
    if url.startswith("sqlite"):
        return _run_sqlite(url, sql, timeout_s, max_rows, field)
    return _run_postgres(url, sql, timeout_s, max_rows, field)


def _limited(cursor: Any, max_rows: int, field: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    if cursor.description is None:
        raise InvalidArgument(f"{field} returned no rows (not a query)", field=field)
    columns = [str(d[0]) for d in cursor.description]
    rows = [tuple(r) for r in cursor.fetchmany(max_rows + 1)]
    if len(rows) > max_rows:
        raise ResourceExhausted(
            f"{field} returns more than sources.sql_max_rows={max_rows} rows", field=field
        )
    return columns, rows


def _run_sqlite(
    url: str, sql: str, timeout_s: float, max_rows: int, field: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    from sqlalchemy.engine import make_url

    database = make_url(url).database or ""
    if database in ("", ":memory:"):
        raise InvalidArgument("sources.sql_url must name an SQLite file", field="sources.sql_url")
    uri = "file:" + urllib.parse.quote(str(Path(database).resolve())) + "?mode=ro"
    deadline = time.monotonic() + timeout_s
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise FailedPrecondition(
            f"{field}: cannot open the database of sources.sql_url: {exc}", field=field
        ) from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        # a nonzero return interrupts the statement: the timeout
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        return _limited(conn.execute(sql), max_rows, field)
    except sqlite3.Error as exc:
        message = str(exc)
        if "interrupted" in message:
            raise ResourceExhausted(
                f"{field} ran longer than sources.sql_timeout_seconds={timeout_s:g}", field=field
            ) from exc
        if "readonly" in message or "read-only" in message:
            raise PermissionDenied(f"{field} may only read: {message}", field=field) from exc
        raise InvalidArgument(f"{field}: SQL query failed: {message}", field=field) from exc
    finally:
        conn.close()


def _run_postgres(
    url: str, sql: str, timeout_s: float, max_rows: int, field: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    # psycopg 3 whatever driver the URL names: its prepared statements hold one statement
    target = make_url(url).set(drivername="postgresql+psycopg")
    # a fresh connection per query (NullPool): no session state survives from one to the next
    engine = create_engine(target, poolclass=NullPool)
    try:
        try:
            raw = engine.raw_connection()
        except (DBAPIError, SQLAlchemyError, psycopg.Error) as exc:
            reason = type(exc.__cause__ or exc).__name__  # never the URL: it may hold a password
            raise FailedPrecondition(
                f"{field}: cannot connect to sources.sql_url: {reason}", field=field
            ) from exc
        try:
            cur = raw.cursor()
            cur.execute("SET TRANSACTION READ ONLY")  # first statement: opens the transaction
            cur.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
            cur.execute("SELECT current_setting('is_superuser')")
            if cur.fetchone()[0] == "on":
                raise PermissionDenied(
                    "sources.sql_url connects as a PostgreSQL superuser, which can read server "
                    "files whatever the transaction mode; connect as a role that can only read",
                    field="sources.sql_url",
                )
            cur.execute(sql, prepare=True)  # extended protocol: one statement, never several
            return _limited(cur, max_rows, field)
        except psycopg.Error as exc:  # classified by SQLSTATE
            state = exc.sqlstate
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if state is None:  # the driver's own failure, e.g. a lost connection
                raise FailedPrecondition(
                    f"{field}: the database of sources.sql_url failed: {first}", field=field
                ) from exc
            if state == _PG_TIMEOUT:
                raise ResourceExhausted(
                    f"{field} ran longer than sources.sql_timeout_seconds={timeout_s:g}",
                    field=field,
                ) from exc
            if state in _PG_DENIED:
                raise PermissionDenied(f"{field} may only read: {first}", field=field) from exc
            raise InvalidArgument(f"{field}: SQL query failed: {first}", field=field) from exc
        finally:
            with contextlib.suppress(Exception):  # a broken connection: nothing to undo
                raw.rollback()
            raw.close()
    finally:
        engine.dispose()


class JobSources:
    """Reads a job's ``sql`` and ``path`` sources within what `SourceSettings` allow."""

    def __init__(self, settings: SourceSettings | None = None) -> None:
        self.settings = settings or SourceSettings()
        self._dirs = tuple(Path(d).resolve() for d in self.settings.path_dirs)

    def path(self, raw: str, field: str) -> Path:
        """The resolved file ``raw`` names (relative: to the first of ``path_dirs``).

        Raises:
            PermissionDenied: path sources are off, or the file lies outside ``path_dirs``.
            NotFound: an allowed path with no file.
            InvalidArgument: a path the system cannot even look up (e.g. a name too long).
        """
        if not self._dirs:
            raise PermissionDenied(
                f"{field}: path sources are off on this server; the operator allows them "
                "with sources.path_dirs (or send the rows inline)",
                field=field,
            )
        path = Path(raw)
        if not path.is_absolute():
            path = self._dirs[0] / path
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # ValueError: a NUL byte
            raise InvalidArgument(f"{field}: bad path {quote(raw)}", field=field) from exc
        if not any(resolved.is_relative_to(d) for d in self._dirs):
            raise PermissionDenied(
                f"{field}: {quote(raw)} is outside the directories sources.path_dirs allows",
                field=field,
            )
        try:
            resolved.stat()
        except FileNotFoundError:
            raise NotFound(f"{field}: no file {quote(raw)}", field=field) from None
        except OSError as exc:
            raise InvalidArgument(
                f"{field}: cannot read {quote(raw)}: {exc.strerror}", field=field
            ) from exc
        return resolved

    def sql_table(self, sql: str, *, id_column: str, label: str, field: str) -> Table:
        """The table a ``sql`` source's query returns (see the module docstring).

        Raises:
            PermissionDenied: SQL sources are off (the message names ``sources.sql_url``).
            InvalidArgument / PermissionDenied / ResourceExhausted: see `check_query` and
                `run_query`.
        """
        s = self.settings
        if not s.sql_url:
            raise PermissionDenied(
                f"{field}: SQL sources are off on this server; the operator allows them with "
                "sources.sql_url (the database they may query, as a read-only role)",
                field=field,
            )
        query = check_query(sql, field)
        columns, rows = run_query(
            s.sql_url, query, timeout_s=s.sql_timeout_seconds, max_rows=s.sql_max_rows, field=field
        )
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        return table_from_query(records, columns, id_column, label)
