"""Server settings: one frozen object, built in ``main()`` from a TOML file and the environment.

Environment variables override the file: ``VECLINK__SECTION__KEY=value`` (values parsed as
JSON when they parse, else taken as strings), e.g. ``VECLINK__SERVER__PORT=6000`` or
``VECLINK__STORAGE__DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test``.
Nothing here is read at import time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from veclink.errors import InvalidArgument
from veclink.validation import Problems, convert, int_problem, number_problem, quote

DEFAULT_MODEL = "all-MiniLM-L6-v2"
ENV_PREFIX = "VECLINK__"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """``[server.tls]``: PEM file paths; cert and key together turn TLS on."""

    #: server certificate chain (PEM); with ``key``, the gRPC port speaks only TLS
    cert: str = ""
    #: private key of ``cert`` (PEM)
    key: str = ""
    #: CA bundle (PEM) that client certificates must chain to; set: mutual TLS
    client_ca: str = ""
    #: with client_ca: refuse clients without a certificate (false: check one if presented)
    require_client_cert: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerSettings:
    #: interface to bind
    host: str = "127.0.0.1"
    #: port to bind (0 picks a free one)
    port: int = 50051
    #: largest request or response message, bytes (bigger gets RESOURCE_EXHAUSTED)
    max_message_bytes: int = 64 * 1024 * 1024
    #: threads running encoders, index and SQL work off the event loop
    workers: int = 4
    #: threads of numpy's and faiss's BLAS, process-wide (0: the libraries' default). Worker
    #: threads already run requests side by side; extra BLAS helpers only spin beside them
    #: (issue 14: search p99 13.6 -> 4.8 ms with one)
    blas_threads: int = 1
    #: seconds to let in-flight calls finish on shutdown
    grace_seconds: float = 5.0
    #: serve HTTP /metrics (Prometheus), /healthz and /readyz on metrics_port
    metrics: bool = True
    #: port of the HTTP /metrics, /healthz and /readyz endpoints, on ``host`` (0: any free one)
    metrics_port: int = 9464
    #: TLS for the gRPC port (off unless cert and key are set)
    tls: TlsSettings = TlsSettings()


@dataclasses.dataclass(frozen=True, kw_only=True)
class StorageSettings:
    #: holds catalog.db (SQLite default) and one index directory per collection
    data_dir: str = "./veclink-data"
    #: SQLAlchemy URL of the catalog; empty: SQLite file in data_dir
    database_url: str = ""
    #: index kind of collections created without one: flat or partitioned
    default_index_kind: str = "partitioned"
    #: snapshot a collection's index (and truncate its WAL) after this many writes (0: off)
    checkpoint_records: int = 10_000
    #: ... or once its WAL holds this many bytes (0: off)
    checkpoint_wal_bytes: int = 64 * 1024 * 1024
    #: ... or this many seconds after the last snapshot, once the WAL holds anything (0: off)
    checkpoint_seconds: float = 300.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class LimitSettings:
    """Bounds every request is checked against before any work (see service/validate.py)."""

    #: records per Upsert message / stream batch
    max_batch: int = 10_000
    #: inputs per Embed request
    max_embed_inputs: int = 2_048
    #: largest k a search or Match may ask for
    max_k: int = 1_000
    #: characters in one text (record text, search text, Embed input, instruction)
    max_text_chars: int = 100_000
    #: ids per Get / Delete request
    max_ids: int = 10_000
    #: largest vector dimension of a collection (and of any vector sent)
    max_dimensions: int = 65_536
    #: largest euclidean norm of a sent vector, so scores (<= 4 * norm^2) stay finite
    max_vector_norm: float = 1e9
    #: characters in a record id
    max_id_chars: int = 512
    #: characters in a collection, model, job or column name and a payload key
    max_name_chars: int = 128
    #: bytes of one encoded image
    max_image_bytes: int = 16 * 1024 * 1024
    #: encoded bytes of one JSON object (payload, record, row, index options)
    max_struct_bytes: int = 1024 * 1024
    #: encoded bytes of a linkage spec (it may carry labelled pairs)
    max_spec_bytes: int = 8 * 1024 * 1024
    #: nesting depth of any JSON value (objects and lists)
    max_struct_depth: int = 32
    #: conditions in a search filter
    max_filter_conditions: int = 64
    #: values in one any_of condition
    max_filter_values: int = 1_024
    #: inline rows of one linkage table
    max_rows: int = 1_000_000
    #: characters of a linkage job's SQL source
    max_sql_chars: int = 100_000
    #: partitions a search may ask to probe
    max_nprobe: int = 1_000_000
    #: shards of one collection
    max_shards: int = 1_024


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """API keys; kept out of ``repr`` so that logging settings never shows them."""

    #: API keys allowed to read (search, get, embed, list)
    read_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    #: API keys allowed to read and write; no keys at all disables authentication
    write_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    #: file of read keys, one a line ('#' comments); read when the server starts
    read_keys_file: str = ""
    #: file of read-write keys, one a line ('#' comments); read when the server starts
    write_keys_file: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceSettings:
    """Where linkage jobs may read tables from on the server; everything is off by default."""

    #: SQLAlchemy URL (postgresql or sqlite) that ``sql`` job sources query; empty: refused.
    #: Use a role that can only read: queries also run in a read-only transaction.
    sql_url: str = dataclasses.field(default="", repr=False)
    #: seconds one ``sql`` source query may run
    sql_timeout_seconds: float = 60.0
    #: most rows one ``sql`` source may return (more: RESOURCE_EXHAUSTED)
    sql_max_rows: int = 1_000_000
    #: directories ``path`` job sources may read under (symlinks resolved); empty: refused
    path_dirs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """``[cluster]``: cluster mode on Ray (docs/ray.md); off unless ``ray_address`` is set."""

    #: empty: embedded mode (no Ray). ``local``: start a Ray inside the server (trying it
    #: out); ``auto``: the cluster of this node; ``host:6379`` or ``ray://host:10001``
    ray_address: str = ""
    #: CPUs each shard actor reserves (0: shards need memory and disk, not a CPU slot)
    shard_cpus: float = 0.0
    #: encoder replicas (Ray actors) per served model; 0: encoders run in the server process
    encoder_replicas: int = 0
    #: GPUs each encoder replica reserves (one each when the cluster has GPUs)
    encoder_gpus: float = 0.0
    #: CPUs each encoder replica reserves
    encoder_cpus: float = 1.0
    #: CPUs a ``local`` Ray may use (0: all of this machine's)
    local_cpus: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncodingSettings:
    """``[encoding]``: how concurrent requests to one model are merged (encoders/batcher.py)."""

    #: merge concurrent requests into shared batches (false: each request encodes alone)
    batching: bool = True
    #: right after a batch, the longest an idle model waits for as many requests as came
    #: together lately, milliseconds (closed-loop clients resend a few ms after their
    #: replies); a request after a quiet spell never waits, and while the model is busy
    #: requests gather until it frees
    max_wait_ms: float = 3.0
    #: most inputs per forward pass; 0: the model spec's batch_size
    max_batch: int = 0
    #: most padded tokens (rows x longest row) per forward pass; 0: the model spec's
    #: batch_tokens; unset there too: 256 for a tokenising model on the CPU (less padding,
    #: activations that stay in cache), else only max_batch limits a batch
    batch_tokens: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    limits: LimitSettings = LimitSettings()
    auth: AuthSettings = AuthSettings()
    sources: SourceSettings = SourceSettings()
    cluster: ClusterSettings = ClusterSettings()
    encoding: EncodingSettings = EncodingSettings()
    #: served model name -> encoder spec (JSON object with "kind")
    models: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: {DEFAULT_MODEL: {"kind": "hf-text"}}
    )
    #: model used when a request names none
    default_model: str = DEFAULT_MODEL

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


_SECTIONS = {
    "server": ServerSettings,
    "storage": StorageSettings,
    "limits": LimitSettings,
    "auth": AuthSettings,
    "sources": SourceSettings,
    "cluster": ClusterSettings,
    "encoding": EncodingSettings,
}


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build settings from a TOML file, then the environment, then explicit overrides.

    Values follow the type policy of `veclink.validation` (``port = 50051.0`` or
    ``workers = true`` is refused); an environment variable's text is read as the type of the
    setting it names (``VECLINK__SERVER__PORT=6000`` is the integer 6000, a string setting
    keeps the text as it is, a list takes JSON or ``a,b,c``). Every problem is reported at
    once in one InvalidArgument.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument(
                f"cannot read settings file {path}: {exc}", field="config"
            ) from exc
    env = os.environ if env is None else env
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        target = raw
        for part in parts[:-1]:  # VECLINK__SERVER__TLS__CERT -> raw["server"]["tls"]["cert"]
            target = target.setdefault(part, {})
        target[parts[-1]] = _EnvText(value)
    _merge(raw, overrides or {})
    return _build(raw)


class _EnvText(str):
    """An environment variable's text, read as the type of the setting it sets."""


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _from_env(hint: Any, text: _EnvText) -> Any:
    if hint is str or (typing.get_origin(hint) in (typing.Union, types.UnionType)):
        # a string setting keeps its text; JSON quotes are taken off
        value = _json_or_text(text) if text.startswith('"') else str(text)
        return value if isinstance(value, str) else str(text)
    if typing.get_origin(hint) is tuple:
        value = _json_or_text(text) if text.startswith("[") else text
        return value if isinstance(value, list) else str(text).split(",")
    return _json_or_text(text)


def _plain(value: Any) -> Any:
    """Environment text outside the typed sections (``models``) read as JSON when it parses."""
    if isinstance(value, _EnvText):
        return _json_or_text(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _merge(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Deep update: an override of ``server.tls.cert`` keeps ``server.tls.key`` from the file."""
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


#: bounds of numeric settings beyond the rule that none is negative
_BOUNDS: dict[str, dict[str, int]] = {
    "server.port": {"ge": 0, "le": 65535},
    "server.metrics_port": {"ge": 0, "le": 65535},
    "server.workers": {"ge": 1},
    "server.max_message_bytes": {"ge": 1},
}
#: settings that name files or directories
_PATHS = ("data_dir", "cert", "key", "client_ca", "read_keys_file", "write_keys_file")


def _build(raw: dict[str, Any]) -> Settings:
    problems = Problems()
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _SECTIONS:
            cls = _SECTIONS[name]
            if not isinstance(value, dict):
                problems.add(name, "must be a table")
                continue
            kwargs[name] = _section(cls, name, value, problems)
        elif name == "models":
            value = _plain(value)
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                problems.add("models", "must map model names to encoder spec tables")
            else:
                kwargs["models"] = value
        elif name == "default_model":
            value = str(value) if isinstance(value, _EnvText) else value
            if isinstance(value, str):
                kwargs["default_model"] = value
            else:
                problems.add("default_model", f"must be a string, got {quote(value)}")
        else:
            valid = ", ".join([*_SECTIONS, "models", "default_model"])
            problems.add(name, f"unknown setting (valid: {valid})")
    problems.raise_if_any("invalid settings", "config")
    settings = Settings(**kwargs)
    if settings.default_model not in settings.models:
        raise InvalidArgument(
            f"invalid settings: default_model {settings.default_model!r} is not in models",
            field="config",
        )
    return settings


def _section(cls: type, name: str, values: dict[str, Any], problems: Problems) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{name}.{key}"
        if key not in fields:
            problems.add(path, f"unknown (valid: {', '.join(fields)})")
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):  # a sub-table such as [server.tls]
            if isinstance(value, dict):
                out[key] = _section(hint, path, value, problems)
            else:
                problems.add(path, "must be a table")
            continue
        if isinstance(value, _EnvText):
            value = _from_env(hint, value)
        elif typing.get_origin(hint) is tuple and isinstance(value, str):
            value = value.split(",")  # a list written as one string: "k1,k2"
        before = len(problems.items)
        value, ok = convert(hint, value, path, problems)
        if ok and hint in (int, float):
            bounds = _BOUNDS.get(path, {"ge": 0})
            ok = problems.add(
                path, (int_problem if hint is int else number_problem)(value, **bounds)
            )
        if ok and key in _PATHS and value:
            ok = problems.path(path, value)
        if ok and key == "path_dirs":
            ok = all(problems.path(f"{path}[{i}]", d) for i, d in enumerate(value))
        if ok and len(problems.items) == before:
            out[key] = value
    if name == "server.tls":
        _check_tls(out, problems)
    url = str(out.get("sql_url", "")) if name == "sources" else ""
    if url and not url.startswith(("sqlite", "postgresql")):
        problems.add("sources.sql_url", "only postgresql and sqlite URLs are supported")
    if name == "storage" and "default_index_kind" in out:
        problems.choice(
            "storage.default_index_kind", out["default_index_kind"], ("flat", "partitioned")
        )
    return cls(**out)


def _check_tls(values: dict[str, Any], problems: Problems) -> None:
    if bool(values.get("cert")) != bool(values.get("key")):
        problems.add("server.tls", "cert and key go together (set both or neither)")
    if values.get("client_ca") and not values.get("cert"):
        problems.add("server.tls.client_ca", "mutual TLS needs cert and key as well")
