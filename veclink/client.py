"""A small synchronous Python client over the generated gRPC stubs.

Example::

    from veclink.client import Client
    with Client("127.0.0.1:50051") as c:
        c.create_collection("docs", model="all-MiniLM-L6-v2")
        c.upsert("docs", [{"id": "1", "text": "a dog barks", "payload": {"lang": "en"}}])
        for hit in c.search("docs", text="domestic animal", k=3):
            print(hit.id, hit.score, hit.text)

Errors come back as veclink's own exceptions (NotFound, InvalidArgument, ...), with the
server's message.
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
from veclink.service import convert
from veclink.service.domain import CollectionInfo, Hit, StoredRecord
from veclink.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    common_pb2,
    embeddings_pb2,
    embeddings_pb2_grpc,
    linkage_pb2,
    linkage_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)


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


def _record(r: Mapping[str, Any], i: int) -> points_pb2.Record:
    if "id" not in r:
        raise InvalidArgument(f"records[{i}] has no 'id'", field=f"records[{i}].id")
    msg = points_pb2.Record(id=str(r["id"]))
    if r.get("text") is not None:
        msg.text = str(r["text"])
    if r.get("image") is not None:
        msg.image = bytes(r["image"])
    if r.get("vector") is not None:
        msg.vector.CopyFrom(convert.numpy_to_vector(np.asarray(r["vector"])))
    if r.get("payload"):
        msg.payload.CopyFrom(convert.dict_to_struct(dict(r["payload"])))
    return msg


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
        contents = [
            common_pb2.Content(text=x) if isinstance(x, str) else common_pb2.Content(image=x)
            for x in inputs
        ]
        opts = embeddings_pb2.EmbedOptions(
            normalize=normalize,
            dimensions=dimensions,
            role=common_pb2.ROLE_QUERY if role == "query" else common_pb2.ROLE_DOCUMENT,
            instruction=instruction,
        )
        resp = self._call(
            self.embeddings.Embed,
            embeddings_pb2.EmbedRequest(model=model, inputs=contents, options=opts),
        )
        if not resp.embeddings:
            return np.zeros((0, resp.dimensions), dtype=np.float32)
        return np.stack([convert.vector_to_numpy(v) for v in resp.embeddings])

    def list_models(self) -> list[dict[str, Any]]:
        resp = self._call(self.embeddings.ListModels, embeddings_pb2.ListModelsRequest())
        return [
            {
                "name": m.name,
                "dimensions": m.dimensions,
                "modality": m.modality,
                "spec": convert.struct_to_dict(m.spec),
                "default": m.is_default,
            }
            for m in resp.models
        ]

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
    ) -> CollectionInfo:
        if metric not in convert.METRIC_TO_PROTO:
            raise InvalidArgument(
                f"metric must be one of {', '.join(convert.METRIC_TO_PROTO)}", field="metric"
            )
        if index_kind and index_kind not in convert.INDEX_TO_PROTO:
            raise InvalidArgument(
                f"index_kind must be one of {', '.join(convert.INDEX_TO_PROTO)}",
                field="index_kind",
            )
        req = collections_pb2.CreateCollectionRequest(
            name=name,
            model=model,
            dimensions=dimensions,
            metric=convert.METRIC_TO_PROTO[metric],
            index_kind=convert.INDEX_TO_PROTO.get(index_kind, common_pb2.INDEX_KIND_UNSPECIFIED),
            index_options=convert.dict_to_struct(dict(index_options or {})),
        )
        return _collection(self._call(self.collections.CreateCollection, req).collection)

    def get_collection(self, name: str) -> CollectionInfo:
        req = collections_pb2.GetCollectionRequest(name=name)
        return _collection(self._call(self.collections.GetCollection, req).collection)

    def list_collections(self) -> list[CollectionInfo]:
        resp = self._call(
            self.collections.ListCollections, collections_pb2.ListCollectionsRequest()
        )
        return [_collection(c) for c in resp.collections]

    def delete_collection(self, name: str) -> None:
        self._call(
            self.collections.DeleteCollection, collections_pb2.DeleteCollectionRequest(name=name)
        )

    # ---------------------------------------------------------------- points

    def upsert(self, collection: str, records: Sequence[Mapping[str, Any]]) -> int:
        """Upsert records given as dicts with ``id`` and one of ``text``/``image``/``vector``."""
        req = points_pb2.UpsertRequest(
            collection=collection, records=[_record(r, i) for i, r in enumerate(records)]
        )
        return int(self._call(self.points.Upsert, req).upserted)

    def upsert_stream(self, collection: str, batches: Iterable[Sequence[Mapping[str, Any]]]) -> int:
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
        req = points_pb2.DeleteRequest(collection=collection, ids=list(ids))
        return int(self._call(self.points.Delete, req).deleted)

    def get(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> tuple[list[StoredRecord], list[str]]:
        req = points_pb2.GetRequest(collection=collection, ids=list(ids), with_vectors=with_vectors)
        resp = self._call(self.points.Get, req)
        records = [
            StoredRecord(
                id=r.id,
                text=r.text or None,
                payload=convert.struct_to_dict(r.payload),
                vector=convert.vector_to_numpy(r.vector) if r.HasField("vector") else None,
            )
            for r in resp.records
        ]
        return records, list(resp.missing)

    def search(
        self,
        collection: str,
        *,
        text: str | None = None,
        vector: Sequence[float] | np.ndarray | None = None,
        image: bytes | None = None,
        k: int = 10,
        filter: points_pb2.Filter | Mapping[str, Any] | None = None,
        nprobe: int = 0,
        with_payload: bool = True,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """Search by text, vector or image. ``filter`` maps payload keys to required values."""
        req = points_pb2.SearchRequest(
            collection=collection, k=k, with_payload=with_payload, with_vectors=with_vectors
        )
        if text is not None:
            req.text = text
        if vector is not None:
            req.vector.CopyFrom(convert.numpy_to_vector(np.asarray(vector)))
        if image is not None:
            req.image = image
        if nprobe:
            req.params.nprobe = nprobe
        if isinstance(filter, points_pb2.Filter):
            req.filter.CopyFrom(filter)
        elif filter:
            for key, value in filter.items():
                cond = req.filter.must.add(key=key)
                cond.equals.CopyFrom(convert.dict_to_struct({"v": value}).fields["v"])
        resp = self._call(self.points.Search, req)
        return [
            Hit(
                id=h.id,
                score=h.score,
                text=h.text or None,
                payload=convert.struct_to_dict(h.payload),
                vector=convert.vector_to_numpy(h.vector) if h.HasField("vector") else None,
            )
            for h in resp.hits
        ]

    # ---------------------------------------------------------------- linkage

    def start_job(
        self,
        kind: str,
        left: Sequence[Mapping[str, Any]] | str,
        right: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
        left_id: str = "",
        right_id: str = "",
        encoding: str = "",
    ) -> str:
        """Start a ``link`` or ``dedupe`` job; a table is rows (sent inline) or a server path."""
        if kind not in convert.JOB_KIND_TO_PROTO:
            raise InvalidArgument("kind must be link or dedupe", field="kind")
        req = linkage_pb2.StartJobRequest(
            kind=convert.JOB_KIND_TO_PROTO[kind], spec=convert.dict_to_struct(dict(spec or {}))
        )
        for target, table, id_column in ((req.left, left, left_id), (req.right, right, right_id)):
            if table is None:
                continue
            if isinstance(table, str):
                target.path = table
            else:
                target.inline.rows.extend(convert.dict_to_struct(dict(r)) for r in table)
            target.id_column = id_column
            target.encoding = encoding
        return str(self._call(self.linkage.StartJob, req).job_id)

    def get_job(self, job_id: str) -> dict[str, Any]:
        job = self._call(self.linkage.GetJob, linkage_pb2.GetJobRequest(job_id=job_id)).job
        return _job(job)

    def watch_job(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Yield the job each time it progresses, until it ends."""
        try:
            for update in self.linkage.WatchJob(
                linkage_pb2.WatchJobRequest(job_id=job_id), metadata=self.metadata
            ):
                yield _job(update.job)
        except grpc.RpcError as exc:
            _raise(exc)

    def job_results(
        self, job_id: str, page_size: int = 1000
    ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]]]:
        """All accepted pairs (link) or entity assignments (dedupe) of a finished job."""
        pairs: list[tuple[str, str, float]] = []
        entities: list[tuple[str, str]] = []
        token = ""
        while True:
            resp = self._call(
                self.linkage.GetResults,
                linkage_pb2.GetResultsRequest(job_id=job_id, page_size=page_size, page_token=token),
            )
            pairs += [(p.left_id, p.right_id, p.score) for p in resp.pairs]
            entities += [(e.id, e.entity_id) for e in resp.entities]
            token = resp.next_page_token
            if not token:
                return pairs, entities

    def match(
        self, job_id: str, record: Mapping[str, Any], *, k: int = 5, assign: bool = False
    ) -> dict[str, Any]:
        """Match one record against a finished job's entities."""
        resp = self._call(
            self.linkage.Match,
            linkage_pb2.MatchRequest(
                job_id=job_id, record=convert.dict_to_struct(dict(record)), k=k, assign=assign
            ),
        )
        return {
            "candidates": [
                {"entity_id": c.entity_id, "record_id": c.record_id, "score": c.score}
                for c in resp.candidates
            ],
            "assigned_entity_id": resp.assigned_entity_id or None,
        }

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _collection(c: collections_pb2.Collection) -> CollectionInfo:
    return CollectionInfo(
        name=c.name,
        model=c.model,
        dim=c.dimensions,
        metric=convert.METRIC_FROM_PROTO.get(c.metric, "cosine"),
        index_kind=convert.INDEX_FROM_PROTO.get(c.index_kind, ""),
        index_options=convert.struct_to_dict(c.index_options),
        count=c.count,
        created_at=c.created_at.ToDatetime(),
        index_stats=convert.struct_to_dict(c.index_stats),
    )


def _job(job: linkage_pb2.Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "kind": convert.JOB_KIND_FROM_PROTO.get(job.kind, ""),
        "state": {v: k for k, v in convert.JOB_STATE_TO_PROTO.items()}.get(job.state, ""),
        "stage": job.stage,
        "progress": job.progress,
        "error": job.error,
        "metrics": convert.struct_to_dict(job.metrics),
    }
