"""A small synchronous Python client over the generated gRPC stubs.

Example::

    from veclink.client import Client
    with Client("127.0.0.1:50051") as c:
        c.create_collection("docs", model="all-MiniLM-L6-v2")
        c.upsert("docs", [{"id": "1", "text": "a dog barks", "payload": {"lang": "en"}}])
        for hit in c.search("docs", text="domestic animal", k=3):
            print(hit.id, hit.score, hit.text)

Replies are the typed objects of `veclink.wire` (CollectionInfo, Hit, Job, MatchResult...);
JSON values (payloads, rows, statistics, metrics) keep their integers exact. Errors come
back as veclink's own exceptions (NotFound, InvalidArgument, ...), with the server's
message. The client shares its conversions with the server (`veclink.wire.convert`) and
imports nothing of the server or the libraries behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from veclink.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    VeclinkError,
)
from veclink.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    embeddings_pb2,
    embeddings_pb2_grpc,
    linkage_pb2,
    linkage_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)
from veclink.wire import (
    CollectionInfo,
    Condition,
    Embeddings,
    EmbedQuery,
    EntityAssignment,
    Filter,
    Hit,
    Job,
    JobResults,
    MatchedPair,
    MatchResult,
    ModelInfo,
    NewCollection,
    NewJob,
    RecordIn,
    SearchQuery,
    StoredRecord,
    TableSource,
    convert,
)

#: what a record given as a dict may hold
RECORD_KEYS = ("id", "text", "image", "vector", "payload")


class Unavailable(VeclinkError):
    """The server could not be reached."""


_ERRORS: dict[grpc.StatusCode, type[VeclinkError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def _raise(exc: grpc.RpcError) -> None:
    code = exc.code()  # type: ignore[attr-defined]
    cls = _ERRORS.get(code, VeclinkError)
    raise cls(f"{code.name}: {exc.details()}") from exc  # type: ignore[attr-defined]


def _record(r: RecordIn | Mapping[str, Any], i: int) -> points_pb2.Record:
    field = f"records[{i}]"
    if isinstance(r, RecordIn):
        return convert.record_to_proto(r, field)
    if not isinstance(r, Mapping):
        raise InvalidArgument(
            f"{field} must be a RecordIn or a dict, got {type(r).__name__}", field=field
        )
    unknown = [k for k in r if k not in RECORD_KEYS]
    if unknown:
        raise InvalidArgument(
            f"{field} has unknown keys {unknown}; a record holds {', '.join(RECORD_KEYS)}",
            field=field,
        )
    if "id" not in r:
        raise InvalidArgument(f"{field} has no 'id'", field=f"{field}.id")
    image, vector, payload = r.get("image"), r.get("vector"), r.get("payload")
    if image is not None and not isinstance(image, bytes | bytearray | memoryview):
        raise InvalidArgument(
            f"{field}.image must be the encoded image's bytes, got {type(image).__name__}",
            field=f"{field}.image",
        )
    if payload is not None and not isinstance(payload, Mapping):
        raise InvalidArgument(
            f"{field}.payload must be a JSON object, got {type(payload).__name__}",
            field=f"{field}.payload",
        )
    if vector is not None:
        try:
            vector = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"{field}.vector must be a list of numbers ({exc})", field=f"{field}.vector"
            ) from None
    record = RecordIn(
        id=str(r["id"]),
        text=None if r.get("text") is None else str(r["text"]),
        image=None if image is None else bytes(image),
        vector=vector,
        payload=dict(payload or {}),
    )
    return convert.record_to_proto(record, field)


def _filter(filter: Filter | Mapping[str, Any] | None) -> Filter | None:
    """A `Filter`, or a mapping of payload keys to the values they must equal."""
    if filter is None or isinstance(filter, Filter):
        return filter
    if not isinstance(filter, Mapping):
        raise InvalidArgument(
            f"filter must be a Filter or a dict, got {type(filter).__name__}", field="filter"
        )
    return Filter(must=tuple(Condition(key=k, op="equals", value=v) for k, v in filter.items()))


def _table(
    table: TableSource | Sequence[Mapping[str, Any]] | str, id_column: str, encoding: str
) -> TableSource:
    """A table given as a source, rows (sent inline) or a path on the server."""
    if isinstance(table, TableSource):
        return table
    if isinstance(table, str):
        return TableSource(path=table, id_column=id_column, encoding=encoding or None)
    return TableSource(
        rows=[dict(r) for r in table], id_column=id_column, encoding=encoding or None
    )


class Client:
    """Synchronous veclink client. Use as a context manager or call ``close()``."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        api_key: str | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        """Open a channel to ``address`` (nothing is sent until the first call).

        Args:
            address: ``host:port`` of the server.
            api_key: sent as ``x-api-key`` with every call.
            timeout: seconds per call (None: no limit).
            max_message_bytes: largest message either way.
            tls: speak TLS; implied by any of the three PEM arguments.
            root_certificates: PEM CA bundle that the server certificate must chain to
                (None: the system's roots).
            certificate_chain: PEM client certificate, for a server that wants mutual TLS.
            private_key: PEM key of ``certificate_chain``.
            tls_server_name: the name to check the server certificate against, when it is
                not the host in ``address``.
        """
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if bool(certificate_chain) != bool(private_key):
            raise InvalidArgument(
                "a client certificate needs its private key (give both or neither)",
                field="certificate_chain",
            )
        if tls or root_certificates or certificate_chain:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.timeout = timeout
        self.metadata = (("x-api-key", api_key),) if api_key else ()
        self.embeddings = embeddings_pb2_grpc.EmbeddingsStub(self.channel)
        self.collections = collections_pb2_grpc.CollectionsStub(self.channel)
        self.points = points_pb2_grpc.PointsStub(self.channel)
        self.linkage = linkage_pb2_grpc.LinkageStub(self.channel)

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            _raise(exc)

    # ---------------------------------------------------------------- embeddings

    def embed(
        self,
        inputs: Sequence[str | bytes],
        *,
        model: str = "",
        role: str = "query",
        normalize: bool = False,
        dimensions: int = 0,
        instruction: str = "",
    ) -> np.ndarray:
        """Vectors of texts (str) or encoded images (bytes): float32, one row per input.

        Args:
            dimensions: keep the first ``dimensions`` components (Matryoshka); the
                truncated vectors are normalised again when the model's are unit length.
            normalize: L2-normalise every vector (after truncation).
        """
        return self.embed_quantized(
            inputs,
            model=model,
            role=role,
            normalize=normalize,
            dimensions=dimensions,
            instruction=instruction,
            precision="float32",
        ).values

    def embed_quantized(
        self,
        inputs: Sequence[str | bytes],
        *,
        precision: str,
        model: str = "",
        role: str = "query",
        normalize: bool = False,
        dimensions: int = 0,
        instruction: str = "",
    ) -> Embeddings:
        """`embed` at another precision: ``int8`` / ``uint8`` (a byte per component and a
        scale per vector), ``binary`` / ``ubinary`` (a bit per component, packed) or
        ``float32``; see `veclink.wire.types.Embeddings` for the layouts and
        ``Embeddings.to_float32()`` to reconstruct float vectors."""
        query = EmbedQuery(
            inputs=tuple(inputs),
            model=model,
            role=role,  # type: ignore[arg-type]
            normalize=normalize,
            dimensions=dimensions,
            instruction=instruction or None,
            precision=precision,
        )
        resp = self._call(self.embeddings.Embed, convert.embed_to_proto(query))
        return convert.embeddings_from_proto(resp)

    def list_models(self) -> list[ModelInfo]:
        """The served models, with their encoder specs."""
        resp = self._call(self.embeddings.ListModels, embeddings_pb2.ListModelsRequest())
        return [convert.model_info_from_proto(m) for m in resp.models]

    # ---------------------------------------------------------------- collections

    def create_collection(
        self,
        name: str,
        *,
        model: str = "",
        dimensions: int = 0,
        metric: str = "cosine",
        index_kind: str = "",
        index_options: Mapping[str, Any] | None = None,
        shards: int = 0,
    ) -> CollectionInfo:
        """Create a collection embedded by a served ``model``, or vectors-only (``dimensions``).

        ``index_options`` are the index kind's options, e.g. ``{"split_limit": 512}`` for a
        partitioned index (options without an ``index_kind`` make a partitioned index).
        ``shards`` >= 1 spreads the vectors over that many shards (Ray actors when the server
        runs in cluster mode); 0 keeps one index.
        """
        new = NewCollection(
            name=name,
            model=model,
            dim=dimensions,
            metric=metric,
            index_kind=index_kind,
            index_options=dict(index_options or {}),
            shards=shards,
        )
        req = convert.new_collection_to_proto(new)
        resp = self._call(self.collections.CreateCollection, req)
        return convert.collection_from_proto(resp.collection)

    def get_collection(self, name: str) -> CollectionInfo:
        """A collection with its record count and index statistics."""
        req = collections_pb2.GetCollectionRequest(name=name)
        return convert.collection_from_proto(
            self._call(self.collections.GetCollection, req).collection
        )

    def list_collections(self) -> list[CollectionInfo]:
        resp = self._call(
            self.collections.ListCollections, collections_pb2.ListCollectionsRequest()
        )
        return [convert.collection_from_proto(c) for c in resp.collections]

    def delete_collection(self, name: str) -> None:
        self._call(
            self.collections.DeleteCollection, collections_pb2.DeleteCollectionRequest(name=name)
        )

    # ---------------------------------------------------------------- points

    def upsert(self, collection: str, records: Sequence[RecordIn | Mapping[str, Any]]) -> int:
        """Upsert records: `RecordIn`, or dicts with ``id``, ``text`` / ``image`` /
        ``vector`` and ``payload``. Returns how many were written."""
        req = points_pb2.UpsertRequest(
            collection=collection, records=[_record(r, i) for i, r in enumerate(records)]
        )
        return int(self._call(self.points.Upsert, req).upserted)

    def upsert_stream(
        self, collection: str, batches: Iterable[Sequence[RecordIn | Mapping[str, Any]]]
    ) -> int:
        """Bulk upsert over one client stream; each batch is applied all-or-nothing."""

        def requests() -> Iterator[points_pb2.UpsertRequest]:
            for batch in batches:
                yield points_pb2.UpsertRequest(
                    collection=collection, records=[_record(r, i) for i, r in enumerate(batch)]
                )

        try:
            resp = self.points.UpsertStream(requests(), timeout=None, metadata=self.metadata)
        except grpc.RpcError as exc:
            _raise(exc)
        return int(resp.upserted)

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Delete records by id; returns how many existed."""
        req = points_pb2.DeleteRequest(collection=collection, ids=list(ids))
        return int(self._call(self.points.Delete, req).deleted)

    def get(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> tuple[list[StoredRecord], list[str]]:
        """The records with these ids, in order, and the ids that do not exist."""
        req = points_pb2.GetRequest(collection=collection, ids=list(ids), with_vectors=with_vectors)
        resp = self._call(self.points.Get, req)
        return [convert.stored_record_from_proto(r) for r in resp.records], list(resp.missing)

    def search(
        self,
        collection: str,
        *,
        text: str | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        image: bytes | None = None,
        k: int = 10,
        filter: Filter | Mapping[str, Any] | None = None,
        nprobe: int = 0,
        with_payload: bool = True,
        with_vectors: bool = False,
        instruction: str = "",
    ) -> list[Hit]:
        """Search by text, vector or image, best first.

        ``filter`` is a `Filter` (equals / any_of / range conditions), or a dict mapping
        payload keys to the values they must equal.
        """
        query = SearchQuery(
            collection=collection,
            k=k,
            vector=None if vector is None else np.asarray(vector, dtype=np.float32),
            text=text,
            image=image,
            filter=_filter(filter),
            nprobe=nprobe or None,
            with_payload=with_payload,
            with_vectors=with_vectors,
            instruction=instruction or None,
        )
        resp = self._call(self.points.Search, convert.search_to_proto(query))
        return [convert.hit_from_proto(h) for h in resp.hits]

    # ---------------------------------------------------------------- linkage

    def start_job(
        self,
        kind: str,
        left: TableSource | Sequence[Mapping[str, Any]] | str,
        right: TableSource | Sequence[Mapping[str, Any]] | str | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
        left_id: str = "",
        right_id: str = "",
        encoding: str = "",
    ) -> str:
        """Start a ``link`` or ``dedupe`` job; returns its id.

        A table is a `TableSource` (a server path, rows or SQL), rows (sent inline) or a
        path on the server. ``spec`` is a linkage spec dict, e.g.
        ``{"precision": 0.9, "blocking": {"k": 30}}``; a wrong key or type is reported
        before anything is sent.
        """
        if kind not in ("link", "dedupe"):
            raise InvalidArgument(f"kind must be link or dedupe; got {kind!r}", field="kind")
        job = NewJob(
            kind=kind,  # type: ignore[arg-type]
            left=_table(left, left_id, encoding),
            right=None if right is None else _table(right, right_id, encoding),
            spec=dict(spec or {}),
        )
        return str(self._call(self.linkage.StartJob, convert.new_job_to_proto(job)).job_id)

    def get_job(self, job_id: str) -> Job:
        resp = self._call(self.linkage.GetJob, linkage_pb2.GetJobRequest(job_id=job_id))
        return convert.job_from_proto(resp.job)

    def watch_job(self, job_id: str) -> Iterator[Job]:
        """Yield the job each time it progresses, until it ends."""
        try:
            for update in self.linkage.WatchJob(
                linkage_pb2.WatchJobRequest(job_id=job_id), metadata=self.metadata
            ):
                yield convert.job_from_proto(update.job)
        except grpc.RpcError as exc:
            _raise(exc)

    def job_results(self, job_id: str, page_size: int = 1000) -> JobResults:
        """All accepted pairs (link) or entity assignments (dedupe) of a finished job."""
        pairs: list[MatchedPair] = []
        entities: list[EntityAssignment] = []
        token = ""
        while True:
            resp = self._call(
                self.linkage.GetResults,
                linkage_pb2.GetResultsRequest(job_id=job_id, page_size=page_size, page_token=token),
            )
            page_pairs, page_entities, token = convert.results_from_proto(resp)
            pairs += page_pairs
            entities += page_entities
            if not token:
                return JobResults(pairs, entities)

    def match(
        self, job_id: str, record: Mapping[str, Any], *, k: int = 5, assign: bool = False
    ) -> MatchResult:
        """Match one record against a finished job's entities (``assign``: join the best
        entity above the threshold)."""
        req = convert.match_request_to_proto(job_id, record, k, assign)
        return convert.match_from_proto(self._call(self.linkage.Match, req))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
