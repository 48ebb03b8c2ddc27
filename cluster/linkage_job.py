"""Link and dedupe jobs on Ray Data: the single-process pipeline with its heavy stages spread.

The stages and what runs where:

- read: `read_table_on_ray` reads Parquet with ``ray.data.read_parquet``, CSV with
  ``ray.data.read_csv`` (every column as text, the encoding and delimiter found as the
  single-process reader finds them), and SQL with ``ray.data.read_sql``; the rows become
  the same `Table` the single-process reader builds;
- embed: `RayDataEncoder` runs ``map_batches`` over an actor pool of encoder replicas
  (``concurrency`` = replicas; one GPU each when asked);
- block: the kNN index is a `ShardedIndex` whose shards are Ray actors
  (`sharded_index_factory`);
- compare: the candidate pairs are cut into partitions, compared in parallel Ray tasks
  (`ray_compare`), and put back in order;
- score, select, threshold, assign and cluster: on the driver, as in the single-process
  run (they need every candidate's score at once, and are cheap next to the stages above).

So a job gives the pairs the single-process job gives with the same encoder and an exact
(``flat``) blocking index; a ``partitioned`` blocking index is approximate, and sharding it
changes which near neighbours it finds (docs/ray.md).
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from veclink.cluster.ray_shards import RayShards
from veclink.cluster.sharded import ShardedIndex
from veclink.encoders import load_encoder, spec_from_dict
from veclink.linkage.compare import Features
from veclink.linkage.pipeline import compare_here, dedupe, link
from veclink.linkage.tables import Table, table_from_query

from veclink.errors import InvalidArgument, NotFound
from veclink.tabular import detect_file_encoding

# ------------------------------------------------------------------------------ read


def read_table_on_ray(
    source: str | Path,
    *,
    id_column: str = "id",
    encoding: str | None = None,
    delimiter: str | None = None,
    sql_url: str | None = None,
    name: str | None = None,
) -> Table:
    """A table read by Ray Data: a CSV / TSV or Parquet file, or a SQL ``SELECT`` (``sql_url``).

    Raises:
        NotFound: the file does not exist.
        InvalidArgument: an unknown format, or bad rows (as `veclink.linkage.read_table`).
    """
    if sql_url is not None:
        from sqlalchemy import create_engine

        engine = create_engine(sql_url)
        ds = ray.data.read_sql(str(source), lambda: engine.raw_connection())
        return _table(ds, id_column, name or "query")
    path = Path(source)
    label = name or path.name
    if not path.is_file():
        raise NotFound(f"{label}: file {str(path)!r} does not exist", field=label)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _table(ray.data.read_parquet(str(path)), id_column, label)
    if suffix not in (".csv", ".tsv", ".txt"):
        raise InvalidArgument(
            f"{label}: Ray Data reads .csv, .tsv, .txt and .parquet here; got {suffix!r}",
            field=label,
        )
    import pyarrow as pa
    from pyarrow import csv as pacsv

    encoding = encoding or detect_file_encoding(path)[0]
    with path.open(encoding=encoding, newline="") as fh:
        head = fh.read(64 * 1024)
    if delimiter is None:
        delimiter = "\t" if suffix == ".tsv" else _sniff(head)
    header = next(csv.reader([head.splitlines()[0]], delimiter=delimiter))
    ds = ray.data.read_csv(
        str(path),
        read_options=pacsv.ReadOptions(encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        # every value is text, as the single-process reader keeps it ("007" stays "007")
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}, strings_can_be_null=False
        ),
    )
    return _table(ds, id_column, label)


def _sniff(head: str) -> str:
    try:
        return csv.Sniffer().sniff(head, delimiters=",;|\t").delimiter
    except csv.Error:
        return ","


def _table(ds: Any, id_column: str, label: str) -> Table:
    columns = list(ds.schema().names)
    records = ds.take_all()
    return table_from_query(records, columns, id_column, label)


# ------------------------------------------------------------------------------ embed


class _EmbedBatch:
    """Ray Data's callable class: one loaded encoder per actor of the pool."""

    def __init__(self, encoder: Any, role: str) -> None:
        self.encoder = (
            load_encoder(spec_from_dict(encoder)) if isinstance(encoder, dict) else encoder
        )
        self.role = role

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(t) for t in batch["text"]], role=self.role)
        return {"row": batch["row"], "vector": vectors}


class RayDataEncoder:
    """An encoder whose ``encode`` is a Ray Data ``map_batches`` over encoder replicas.

    Args:
        encoder: an encoder spec (dict, loaded in every replica) or a picklable encoder.
        dim: its output dimension.
        replicas: actors in the pool (``map_batches(concurrency=replicas)``).
        num_cpus, num_gpus: what each replica reserves (one GPU each on a GPU cluster).
        batch_size: texts per batch.
    """

    def __init__(
        self,
        encoder: Any,
        *,
        dim: int,
        replicas: int = 2,
        num_cpus: float = 0.5,
        num_gpus: float = 0.0,
        batch_size: int = 64,
    ) -> None:
        self.source = encoder
        self.spec = None if isinstance(encoder, dict) else getattr(encoder, "spec", None)
        self._dim = dim
        self.replicas = replicas
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, inputs: Sequence[str | bytes], role: str = "document") -> np.ndarray:
        out = np.zeros((len(inputs), self._dim), dtype=np.float32)
        if not len(inputs):
            return out
        ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(inputs)])
        ds = ds.map_batches(
            _EmbedBatch,
            fn_constructor_kwargs={"encoder": self.source, "role": role},
            batch_size=self.batch_size,
            concurrency=self.replicas,
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            batch_format="numpy",
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            out[batch["row"]] = batch["vector"]
        return out


# ------------------------------------------------------------------------------ block


class ScratchShardedIndex(ShardedIndex):
    """A job's blocking index: its shards' directories go when it is closed."""

    scratch: Path

    def close(self) -> None:
        try:
            super().close()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)


@dataclasses.dataclass
class ShardedIndexFactory:
    """``(kind, dim, metric) -> ShardedIndex`` over ``shards`` Ray actors.

    ``root``: where the shards keep their (scratch) files; a temporary directory if None.
    """

    shards: int
    root: Path | None = None

    def __call__(self, kind: str, dim: int, metric: str) -> ShardedIndex:
        if self.root is None:
            path = Path(tempfile.mkdtemp(prefix="veclink-blocking-"))
        else:
            path = self.root / uuid.uuid4().hex
            path.mkdir(parents=True)
        create = {"kind": kind, "dim": dim, "metric": metric, "options": {}}
        group = RayShards.start(path, self.shards, create)
        index = ScratchShardedIndex(group, kind=kind, dim=dim, metric=metric)
        index.scratch = path
        return index


# ------------------------------------------------------------------------------ compare


@ray.remote
def _compare_part(shared: Any, lrows: np.ndarray, rrows: np.ndarray, dedupe: bool) -> Features:
    model, left, right, lv, rv = shared
    return compare_here(model, left, right, lv, rv, lrows, rrows, dedupe=dedupe)


@dataclasses.dataclass
class RayCompare:
    """Compares candidate pairs in ``partitions`` parallel Ray tasks (a `CompareFn`)."""

    partitions: int = 4
    #: fewer pairs than this are compared on the driver (a task costs more than they do)
    min_pairs: int = 256

    def __call__(
        self,
        model: Any,
        left: Table,
        right: Table,
        lv: Any,
        rv: Any,
        lrows: np.ndarray,
        rrows: np.ndarray,
        *,
        dedupe: bool,
    ) -> Features:
        if len(lrows) < self.min_pairs or self.partitions < 2:
            return compare_here(model, left, right, lv, rv, lrows, rrows, dedupe=dedupe)
        shared = ray.put((model, left, right, lv, rv))
        parts = np.array_split(np.arange(len(lrows)), self.partitions)
        done = ray.get(
            [_compare_part.remote(shared, lrows[p], rrows[p], dedupe) for p in parts if p.size]
        )
        return Features(done[0].names, np.concatenate([f.values for f in done]))


# ------------------------------------------------------------------------------ jobs


@dataclasses.dataclass(frozen=True, kw_only=True)
class RayJobOptions:
    """How a linkage job spreads over the cluster."""

    #: encoder replicas of the embed stage
    replicas: int = 2
    #: CPUs and GPUs per encoder replica
    encoder_cpus: float = 0.5
    encoder_gpus: float = 0.0
    #: shards of the blocking index
    shards: int = 2
    #: parallel partitions of the compare stage
    partitions: int = 4


def job_arguments(
    encoder: Any, dim: int, options: RayJobOptions, scratch: Path | None = None
) -> dict[str, Any]:
    """The ``link``/``dedupe`` keyword arguments that run a job's stages on Ray."""
    return {
        "encoder": RayDataEncoder(
            encoder,
            dim=dim,
            replicas=options.replicas,
            num_cpus=options.encoder_cpus,
            num_gpus=options.encoder_gpus,
        ),
        "index_factory": ShardedIndexFactory(options.shards, scratch),
        "compare": RayCompare(options.partitions),
    }


def link_on_ray(
    left: Table,
    right: Table,
    spec: Any,
    *,
    encoder: Any,
    options: RayJobOptions = RayJobOptions(),
    **kwargs: Any,
) -> Any:
    """`veclink.linkage.link` with its embed, block and compare stages on Ray.

    ``encoder``: a spec dict (each replica loads it) or a picklable encoder object.
    """
    return link(left, right, spec, **job_arguments(encoder, _dim(encoder), options), **kwargs)


def dedupe_on_ray(
    table: Table,
    spec: Any,
    *,
    encoder: Any,
    options: RayJobOptions = RayJobOptions(),
    **kwargs: Any,
) -> Any:
    """`veclink.linkage.dedupe` with its embed, block and compare stages on Ray."""
    return dedupe(table, spec, **job_arguments(encoder, _dim(encoder), options), **kwargs)


def _dim(encoder: Any) -> int:
    if isinstance(encoder, dict):
        return int(load_encoder(spec_from_dict(encoder)).dim)
    return int(encoder.dim)
