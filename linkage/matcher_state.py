"""A finished job's `Matcher` as plain data: JSON plus numpy arrays, and back.

The service stores this state with the job's results, so `Match` works after a restart:
the matcher is rebuilt from it on first use. Nothing is pickled: the JSON part holds the
spec, fields, comparator IDF, classifier parameters, threshold, the reference records and
their texts; the arrays (written with ``np.save``, read with ``allow_pickle=False``) hold
the embeddings, lexical IDF, blocking cutoffs and the classifiers' coefficients or trees
(`veclink.linkage.classifier_state`).
Lexical vectors are recomputed from the stored texts (row by row, so exactly), which keeps
the state small.

The encoder is not part of the state: it is named by ``spec.encoder`` and passed in (or
loaded) when the matcher is rebuilt.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from veclink.linkage.blocking import IndexFactory, default_index_factory
from veclink.linkage.classifier_state import classifier_state, load_classifier
from veclink.linkage.compare import Comparator
from veclink.linkage.lexical import LexicalVectorizer
from veclink.linkage.matcher import Matcher
from veclink.linkage.model import LinkModel, Views
from veclink.linkage.spec import FieldSpec, LinkageSpec
from veclink.linkage.tables import Table

from veclink.errors import InvalidArgument

#: bumped whenever the layout changes; a state of another version is refused, not guessed at
FORMAT = 1
_META = "meta.json"
_NPY = ".npy"


@dataclasses.dataclass(frozen=True)
class MatcherState:
    """A matcher as JSON-able ``meta`` plus named numpy ``arrays``."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def to_parts(self) -> dict[str, bytes]:
        """Named byte strings: ``meta.json`` and one ``.npy`` file per array."""
        parts = {_META: json.dumps(self.meta, allow_nan=True).encode("utf-8")}
        for name, arr in self.arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
            parts[name + _NPY] = buf.getvalue()
        return parts

    @classmethod
    def from_parts(cls, parts: Mapping[str, bytes]) -> MatcherState:
        """Inverse of `to_parts`.

        Raises:
            InvalidArgument: a part is missing or unreadable, or the format is not `FORMAT`.
        """
        if _META not in parts:
            raise InvalidArgument("matcher state has no meta.json", field="matcher_state")
        try:
            meta = json.loads(parts[_META].decode("utf-8"))
            arrays = {
                name[: -len(_NPY)]: np.load(io.BytesIO(data), allow_pickle=False)
                for name, data in parts.items()
                if name.endswith(_NPY)
            }
        except (ValueError, EOFError) as exc:  # JSON, UTF-8, npy; EOF: a truncated npy
            raise InvalidArgument(
                f"matcher state is unreadable: {exc}", field="matcher_state"
            ) from exc
        if meta.get("format") != FORMAT:
            raise InvalidArgument(
                f"matcher state format {meta.get('format')!r} is not {FORMAT}",
                field="matcher_state",
            )
        return cls(meta, arrays)


def matcher_state(matcher: Matcher) -> MatcherState:
    """The state of a matcher as built from a job (before any record was assigned).

    Raises:
        InvalidArgument: the matcher already holds link assignments (they are not state).
    """
    if matcher.assigned or matcher.claims:
        raise InvalidArgument("save a matcher's state before it assigns records", field="matcher")
    arrays: dict[str, np.ndarray] = {
        "semantic": matcher.views.semantic,
        "cutoffs": matcher.cutoffs,
    }
    meta = {
        "format": FORMAT,
        "mode": matcher.mode,
        "model": _model_meta(matcher.model, arrays),
        "reference": {
            "id_column": matcher.id_column,
            "ids": list(matcher.ids),
            "columns": list(matcher.columns),
            "data": {c: list(v) for c, v in matcher.data.items()},
            "texts": list(matcher.views.texts),
            "full_texts": list(matcher.views.full_texts),
            "lexical": matcher.views.lexical is not None,
        },
        "entity_of": list(matcher.entity_of),
    }
    return MatcherState(meta, arrays)


def load_matcher(
    state: MatcherState,
    *,
    encoder: Any = None,
    index_factory: IndexFactory = default_index_factory,
) -> Matcher:
    """Rebuild the matcher of `matcher_state`; it matches exactly like the original.

    Args:
        encoder: the job's encoder (default: loaded from ``spec.encoder``).

    Raises:
        InvalidArgument: the state is incomplete or inconsistent (the message says what).
    """
    try:
        meta, arrays = state.meta, state.arrays
        ref = meta["reference"]
        model = _model_from_meta(meta["model"], arrays, encoder)
        full_texts = [str(t) for t in ref["full_texts"]]
        lexical = None
        if ref["lexical"]:
            if model.lexical is None:
                raise InvalidArgument("lexical views without a lexical vectorizer", field="lexical")
            lexical = model.lexical.transform(full_texts)
        views = Views([str(t) for t in ref["texts"]], full_texts, arrays["semantic"], lexical)
        columns = tuple(ref["columns"])
        reference = Table(
            name="reference",
            id_column=ref["id_column"],
            ids=tuple(ref["ids"]),
            columns=columns,
            data={c: tuple(ref["data"][c]) for c in columns},
        )
        return Matcher(
            model,
            reference,
            views,
            list(meta["entity_of"]),
            mode=meta["mode"],
            cutoffs=arrays["cutoffs"],
            index_factory=index_factory,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"matcher state is incomplete: {type(exc).__name__}: {exc}", field="matcher_state"
        ) from exc


# ------------------------------------------------------------------------- the model

#: the `LinkModel` fields stored by name below; any other field must be plain data (a
#: string, a number, tuples of them...) and is stored as it is
_MODEL_PARTS = ("spec", "fields", "encoder", "lexical", "comparator", "classifier", "threshold")


def plain_model_fields(model: LinkModel) -> dict[str, Any]:
    """The `LinkModel` fields beyond `_MODEL_PARTS`, checked to be plain JSON data.

    Raises:
        InvalidArgument: such a field holds something else (it needs its own code here).
    """
    out = {}
    for f in dataclasses.fields(model):
        if f.name in _MODEL_PARTS:
            continue
        value = getattr(model, f.name)
        if not _is_plain(value):
            raise InvalidArgument(
                f"LinkModel.{f.name} ({type(value).__name__}) cannot be stored in a matcher "
                "state: store it in veclink.linkage.matcher_state",
                field=f"model.{f.name}",
            )
        out[f.name] = value
    return out


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, tuple | list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _as_declared(value: Any, declared: Any) -> Any:
    """JSON gives lists; a field declared as a tuple gets tuples back (nested too)."""
    if isinstance(value, list) and "tuple" in str(declared):
        return tuple(_as_declared(v, declared) for v in value)
    return value


def _model_meta(model: LinkModel, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if model.comparator is None:
        raise InvalidArgument("the model is not fitted (no comparator)", field="model")
    out: dict[str, Any] = {
        "spec": model.spec.to_dict(),
        "fields": [dataclasses.asdict(f) for f in model.fields],
        "threshold": float(model.threshold),
        "comparator": {
            "fields": [dataclasses.asdict(f) for f in model.comparator.fields],
            "idf": model.comparator.idf,
            "default_idf": model.comparator.default_idf,
        },
        "lexical": None,
        "classifier": classifier_state(model.classifier, "classifier", arrays),
        "plain": plain_model_fields(model),
    }
    if model.lexical is not None:
        if model.lexical.idf is None:
            raise InvalidArgument("the lexical vectorizer is not fitted", field="lexical")
        out["lexical"] = {"dim": model.lexical.dim, "n": model.lexical.n}
        arrays["lexical_idf"] = model.lexical.idf
    return out


def _model_from_meta(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], encoder: Any
) -> LinkModel:
    spec = LinkageSpec.from_dict(meta["spec"])
    if encoder is None:
        from veclink.encoders import load_encoder

        encoder = load_encoder(spec.encoder)
    cmp = meta["comparator"]
    comparator = Comparator(
        tuple(FieldSpec(**f) for f in cmp["fields"]),
        idf={str(w): float(v) for w, v in cmp["idf"].items()},
        default_idf=float(cmp["default_idf"]),
    )
    lexical = None
    if meta["lexical"] is not None:
        lex = meta["lexical"]
        lexical = LexicalVectorizer(dim=int(lex["dim"]), n=int(lex["n"]), idf=arrays["lexical_idf"])
    declared = {f.name: f.type for f in dataclasses.fields(LinkModel)}
    unknown = sorted(set(meta["plain"]) - set(declared))
    if unknown:
        raise InvalidArgument(
            f"the state has model fields this version does not know: {', '.join(unknown)}",
            field="matcher_state",
        )
    return LinkModel(
        spec=spec,
        fields=tuple(FieldSpec(**f) for f in meta["fields"]),
        encoder=encoder,
        lexical=lexical,
        comparator=comparator,
        classifier=load_classifier(meta["classifier"], "classifier", arrays),
        threshold=float(meta["threshold"]),
        **{k: _as_declared(v, declared[k]) for k, v in meta["plain"].items()},
    )
