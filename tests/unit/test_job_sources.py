"""Linkage job sources are locked down: SQL read-only, one statement, bounded; paths confined."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from veclink.service.linkage_jobs import LinkageJobs
from veclink.service.servicers import status_of
from veclink.service.settings import SourceSettings, load_settings
from veclink.service.sources import JobSources, check_query

from tests.fixtures.server import free_port
from veclink.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from veclink.wire import TableSource

WRITES = (
    "with x as (select 1) update people set name = 'x'",
    "select 1; update people set name = 'x'",
    "select 1; commit; update people set name = 'x'",
    "with x as (delete from people returning *) select * from x",
)


def _people(engine_url: str) -> None:
    engine = create_engine(engine_url)
    with engine.begin() as conn:
        conn.execute(text("create table people (id text primary key, name text)"))
        conn.execute(text("insert into people values ('1', 'ann'), ('2', 'bob'), ('3', 'cy')"))
    engine.dispose()


def _names(engine_url: str) -> list[str]:
    engine = create_engine(engine_url)
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("select name from people order by id"))]
    engine.dispose()
    return names


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    _people(url)
    return url


@pytest.fixture
def pg_reader(pg_url: str) -> Iterator[str]:
    """A URL of a role that may only SELECT from ``people`` in the test's schema."""
    _people(pg_url)
    role = f"veclink_reader_{uuid.uuid4().hex[:8]}"
    schema = str(make_url(pg_url).query["options"]).split("=")[-1]  # -csearch_path=SCHEMA
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'create role "{role}" login'))
        conn.execute(text(f'grant usage on schema "{schema}" to "{role}"'))
        conn.execute(text(f'grant select on people to "{role}"'))
    try:
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'drop owned by "{role}"'))
            conn.execute(text(f'drop role "{role}"'))
        admin.dispose()


def _sources(url: str, **kw: object) -> JobSources:
    return JobSources(SourceSettings(sql_url=url, **kw))  # type: ignore[arg-type]


def _sql(sources: JobSources, sql: str):  # noqa: ANN202
    return sources.sql_table(sql, id_column="id", label="left", field="left.sql")


# ------------------------------------------------------------------------------ off by default


def test_sources_are_off_by_default_with_a_precise_status(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,name\n1,a\n")
    settings = load_settings(env={})
    assert settings.sources.sql_url == "" and settings.sources.path_dirs == ()
    jobs = LinkageJobs(create_engine("sqlite://"), sources=JobSources(settings.sources))
    try:
        with pytest.raises(PermissionDenied, match="sources.sql_url") as sql_off:
            jobs.start("dedupe", {}, TableSource(sql="select 1 as id"), None)
        with pytest.raises(PermissionDenied, match="sources.path_dirs") as path_off:
            jobs.start("dedupe", {}, TableSource(path=str(tmp_path / "t.csv")), None)
    finally:
        jobs.close()
    assert sql_off.value.field == "left.sql" and path_off.value.field == "left.path"
    assert status_of(sql_off.value) == grpc.StatusCode.PERMISSION_DENIED
    assert status_of(path_off.value) == grpc.StatusCode.PERMISSION_DENIED


# ------------------------------------------------------------------------------ SQL


@pytest.mark.parametrize("sql", WRITES)
def test_statement_check_refuses_writes_and_chains(sql: str) -> None:
    with pytest.raises(InvalidArgument, match="left.sql"):
        check_query(sql, "left.sql")


def test_statement_check_refuses_nul_and_huge_text() -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        check_query("select 1\x00", "left.sql")
    with pytest.raises(InvalidArgument, match="longer than"):
        check_query("select 1 " + " " * 200_000, "left.sql")


def test_statement_check_keeps_one_select() -> None:
    assert check_query("  select ';' as id ; ", "f") == "select ';' as id"
    assert check_query("with a as (select 1 as id) select * from a", "f").startswith("with")


@pytest.mark.parametrize("sql", WRITES)
def test_sqlite_source_refuses_writes(sqlite_url: str, sql: str) -> None:
    with pytest.raises((InvalidArgument, PermissionDenied)):
        _sql(_sources(sqlite_url), sql)
    assert _names(sqlite_url) == ["ann", "bob", "cy"]


def test_sqlite_connection_itself_is_read_only(sqlite_url: str) -> None:
    """Behind the statement check, the connection cannot write even if the text got past."""
    from veclink.service.sources import run_query

    for sql in ("with x as (select 1) update people set name = 'x'", "delete from people"):
        with pytest.raises(PermissionDenied, match="may only read"):
            run_query(sqlite_url, sql, timeout_s=5, max_rows=10, field="left.sql")
    with pytest.raises(InvalidArgument, match="one statement"):
        run_query(sqlite_url, "select 1; delete from people", timeout_s=5, max_rows=10, field="f")
    assert _names(sqlite_url) == ["ann", "bob", "cy"]


def test_sqlite_source_reads_with_row_cap_and_timeout(sqlite_url: str) -> None:
    table = _sql(_sources(sqlite_url), "select id, name from people order by id")
    assert table.ids == ("1", "2", "3") and table.column("name") == ("ann", "bob", "cy")
    with pytest.raises(ResourceExhausted, match="sources.sql_max_rows=2"):
        _sql(_sources(sqlite_url, sql_max_rows=2), "select * from people")
    endless = (
        "with recursive r(n) as (select 1 union all select n + 1 from r) "
        "select count(*) as id from r"
    )
    with pytest.raises(ResourceExhausted, match="sql_timeout_seconds"):
        _sql(_sources(sqlite_url, sql_timeout_seconds=0.3), endless)


@pytest.mark.postgres
@pytest.mark.parametrize("sql", WRITES)
def test_postgres_source_refuses_writes(pg_reader: str, pg_url: str, sql: str) -> None:
    with pytest.raises((InvalidArgument, PermissionDenied)):
        _sql(_sources(pg_reader), sql)
    assert _names(pg_url) == ["ann", "bob", "cy"]


@pytest.mark.postgres
def test_postgres_transaction_itself_is_read_only(pg_reader: str, pg_url: str) -> None:
    from veclink.service.sources import run_query

    for sql in ("update people set name = 'x'", "select 1; commit; update people set name = 'x'"):
        with pytest.raises((PermissionDenied, InvalidArgument)):
            run_query(pg_reader, sql, timeout_s=5, max_rows=10, field="left.sql")
    assert _names(pg_url) == ["ann", "bob", "cy"]


@pytest.mark.postgres
def test_postgres_source_reads_within_limits(pg_reader: str) -> None:
    table = _sql(_sources(pg_reader), "select id, name from people order by id")
    assert table.ids == ("1", "2", "3")
    with pytest.raises(ResourceExhausted, match="sources.sql_max_rows=2"):
        _sql(_sources(pg_reader, sql_max_rows=2), "select * from people")
    with pytest.raises(ResourceExhausted, match="sql_timeout_seconds"):
        _sql(_sources(pg_reader, sql_timeout_seconds=0.2), "select pg_sleep(5)::text as id")


@pytest.mark.postgres
def test_postgres_server_files_stay_unreadable(pg_reader: str, pg_url: str) -> None:
    """pg_read_file: refused to the reader role, and a superuser URL is refused outright."""
    query = "select pg_read_file('/etc/hostname') as id"
    with pytest.raises(PermissionDenied, match="pg_read_file"):
        _sql(_sources(pg_reader), query)
    with pytest.raises(PermissionDenied, match="superuser"):
        _sql(_sources(pg_url), query)  # the test URL connects as the postgres superuser


# ------------------------------------------------------------------------------ paths


def test_path_sources_confined_to_allowed_dirs(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "t.csv").write_text("id,name\n1,a\n")
    (outside / "secret.csv").write_text("id,name\n1,s\n")
    (allowed / "link.csv").symlink_to(outside / "secret.csv")
    (allowed / "dirlink").symlink_to(outside)
    sources = JobSources(SourceSettings(path_dirs=(str(allowed),)))
    assert sources.path(str(allowed / "t.csv"), "left.path") == (allowed / "t.csv").resolve()
    assert sources.path("t.csv", "left.path") == (allowed / "t.csv").resolve()
    for bad in (
        str(outside / "secret.csv"),
        str(allowed / ".." / "outside" / "secret.csv"),
        "../outside/secret.csv",
        str(allowed / "link.csv"),
        str(allowed / "dirlink" / "secret.csv"),
        "/etc/passwd",
    ):
        with pytest.raises(PermissionDenied, match="sources.path_dirs"):
            sources.path(bad, "left.path")
    with pytest.raises(NotFound):
        sources.path(str(allowed / "missing.csv"), "left.path")
    with pytest.raises((InvalidArgument, NotFound)) as long_name:
        sources.path("x" * 300 + ".csv", "left.path")
    assert len(str(long_name.value)) < 200  # quotes a prefix, not the whole name


def test_sources_settings_from_file_and_env(tmp_path: Path) -> None:
    settings = load_settings(
        env={
            "VECLINK__SOURCES__PATH_DIRS": '["/srv/a", "/srv/b"]',
            "VECLINK__SOURCES__SQL_URL": "postgresql+psycopg://reader@db/x",
        }
    )
    assert settings.sources.path_dirs == ("/srv/a", "/srv/b")
    assert "reader@db" not in repr(settings)
    with pytest.raises(InvalidArgument, match="sources.sql_url"):
        load_settings(env={"VECLINK__SOURCES__SQL_URL": "mysql://x@y/z"})


def test_sqlite_catalog_in_wal_mode_readable(tmp_path: Path) -> None:
    """The default catalog (SQLite, WAL) can serve as a source while the server has it open."""
    db = tmp_path / "catalog.db"
    writer = sqlite3.connect(db)
    writer.execute("pragma journal_mode=wal")
    writer.execute("create table people (id text, name text)")
    writer.execute("insert into people values ('1', 'a')")
    writer.commit()
    try:
        table = _sql(_sources(f"sqlite:///{db}"), "select * from people")
        assert table.ids == ("1",)
    finally:
        writer.close()


def test_unreachable_source_database_is_a_precondition(tmp_path: Path) -> None:
    """The operator's database being away is not the caller's mistake, nor INTERNAL."""
    from veclink.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="sources.sql_url"):
        _sql(_sources(f"sqlite:///{tmp_path / 'missing.db'}"), "select 1 as id")
    assert not (tmp_path / "missing.db").exists()  # read-only: never created
    closed = free_port()  # a port nothing listens on
    with pytest.raises(FailedPrecondition, match="cannot connect"):
        _sql(_sources(f"postgresql+psycopg://reader@127.0.0.1:{closed}/x"), "select 1 as id")
