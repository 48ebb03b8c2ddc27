"""`LinkageSpec`: what a linkage job compares and how, validated as a whole.

A spec is a tree of frozen keyword-only dataclasses with a JSON round-trip. ``from_dict``
reports every mistake at once (unknown keys, wrong types, bad values, duplicate field
names), in the form ``path: problem``, so a user fixes a spec in one go.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from veclink.errors import InvalidArgument

#: how a field's values are compared (see veclink.linkage.compare)
FIELD_TYPES = ("text", "string", "name", "code", "number", "date", "category")
REFERENCES = ("auto", "right", "left", "both", "none")
#: how records may pair up in a link job (``many_to_one``: many left records to one right)
ASSIGNMENTS = ("auto", "one_to_one", "many_to_one", "one_to_many", "many_to_many")
SERIALIZATIONS = ("plain", "labeled")
CLUSTER_METHODS = ("components", "correlation")
CLASSIFIERS = ("logistic", "gbm")
OBJECTIVES = ("f1", "recall")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One field compared between records (a column on each side)."""

    #: name of the field in features, reports and labels files
    name: str
    #: column in the left table (default: ``name``)
    left: str | None = None
    #: column in the right table (default: the left column)
    right: str | None = None
    #: comparison type, one of FIELD_TYPES
    type: str = "string"
    #: include the value in the text that is embedded for blocking
    embed: bool = True
    #: compute per-field similarity features
    compare: bool = True
    #: values are cut to this many characters before embedding and comparison
    max_chars: int = 300
    #: scale of closeness for numbers (relative) and dates (days): 1/(1+d/scale)
    scale: float | None = None

    @property
    def left_column(self) -> str:
        return self.left or self.name

    @property
    def right_column(self) -> str:
        return self.right or self.left or self.name


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockingSpec:
    """Candidate generation: kNN in both directions over a `VectorIndex`, plus exact keys."""

    #: most neighbours kept per record and direction
    k: int = 20
    #: fewest neighbours kept per record and direction
    min_k: int = 3
    #: adaptive k: keep neighbours scoring at least top1 - margin (then clip to [min_k, k])
    margin: float = 0.1
    #: weight of the character n-gram view in the blocking vector (0: embedding only)
    lexical_weight: float = 0.7
    #: buckets of the hashed character 3-gram view (held sparse; its cosine is a feature)
    lexical_dim: int = 4096
    #: dimension the 3-gram view is projected to (signed hashing) in the dense blocking
    #: vectors; blocking memory and time grow with embedding dim + this. >= lexical_dim:
    #: no projection (the blocking vectors then hold lexical_dim floats per record)
    lexical_blocking_dim: int = 512
    #: exact blocking keys: each key is a list of field names whose values must all be equal
    keys: tuple[tuple[str, ...], ...] = ()
    #: a key value shared by more records than this on one side is ignored (stop-values)
    max_key_block: int = 50
    #: index kind for `veclink.index.create_index`
    index_kind: str = "flat"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LLMJudgeSpec:
    """Re-score borderline pairs with a local causal LM (yes/no next-token probability)."""

    #: local HF directory of a causal LM
    model: str
    #: pairs whose score is within this distance of the threshold are judged
    band: float = 0.15
    #: judge at most this many pairs (closest to the threshold first)
    max_pairs: int = 200
    #: final score = (1 - weight) * score + weight * judge probability
    weight: float = 0.5
    #: ``cpu``, ``cuda`` or ``auto``
    device: str = "cpu"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinkageSpec:
    """Everything a link / dedupe job needs besides the tables themselves."""

    #: compared fields; empty means every non-id column the tables share, as ``string``
    fields: tuple[FieldSpec, ...] = ()
    #: id column of the left table (the only table for dedupe)
    left_id: str = "id"
    #: id column of the right table (default: ``left_id``)
    right_id: str | None = None
    #: ``plain``: values only; ``labeled``: ``name: value`` pairs, for the embedded text
    serialization: str = "plain"
    blocking: BlockingSpec = dataclasses.field(default_factory=BlockingSpec)
    #: precision target tau for thresholds chosen without labels; 0 means no precision
    #: constraint: the threshold with the best estimated F1
    precision: float = 0.9
    #: ``f1``: best estimated F1 with precision >= tau; ``recall``: lowest such threshold
    objective: str = "f1"
    #: fixed score threshold (skips estimation)
    threshold: float | None = None
    #: link jobs: how records pair up. ``auto`` checks each side for duplicates and picks
    #: ``one_to_one`` (neither side has any), ``one_to_many`` (the right side has), ``many_to_one``
    #: (the left side has) or ``many_to_many`` (both); the result says which was used
    assignment: str = "auto"
    #: which side holds no duplicates (used to estimate precision without labels); ``auto``
    #: follows the assignment
    reference: str = "auto"
    #: classifier trained on labels (and on self-labels when there are none)
    classifier: str = "logistic"
    #: dedupe: ``components`` (connected components of accepted pairs) or ``correlation``
    #: (components split so that no cluster holds pairs that score below the threshold on
    #: balance: one weak pair cannot merge two entities)
    cluster: str = "correlation"
    llm_judge: LLMJudgeSpec | None = None
    #: encoder spec (``veclink.encoders.load_encoder``)
    #: (default: all-MiniLM-L6-v2 on the fastest backend that matches torch's vectors,
    #: cosine >= 0.99, and records cut at 128 tokens, which few records reach)
    encoder: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"kind": "hf-text", "backend": "auto", "max_length": 128}
    )
    seed: int = 0
    #: memory (MiB) the job may add to its process; a job whose up-front estimate exceeds
    #: it is refused before it starts. None: 90% of the memory available when it starts
    memory_budget_mb: float | None = None

    @classmethod
    def _legacy(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Older spec keys: ``one_to_one: false`` is ``assignment: many_to_one``."""
        if (
            "one_to_one" in data
            and "assignment" not in data
            and isinstance(data["one_to_one"], bool)
        ):
            data = dict(data)
            data["assignment"] = "one_to_one" if data.pop("one_to_one") else "many_to_one"
        return data

    @property
    def right_id_column(self) -> str:
        return self.right_id or self.left_id

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | LinkageSpec) -> LinkageSpec:
        """Build and validate a spec; raises InvalidArgument listing every problem."""
        if isinstance(data, LinkageSpec):
            problems = data.problems()
            if problems:
                raise InvalidArgument("invalid linkage spec: " + "; ".join(problems), field="spec")
            return data
        problems: list[str] = []
        if isinstance(data, dict):
            data = cls._legacy(data)
        spec = _build(cls, data, "spec", problems)
        if spec is not None:
            problems += spec.problems()
        if problems or spec is None:
            raise InvalidArgument("invalid linkage spec: " + "; ".join(problems), field="spec")
        return spec

    @classmethod
    def from_json(cls, text: str) -> LinkageSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"linkage spec is not valid JSON: {exc}", field="spec") from exc
        return cls.from_dict(data)

    def problems(self) -> list[str]:
        """Every value-level problem of this spec (empty when valid)."""
        out: list[str] = []
        names = [f.name for f in self.fields]
        for i, f in enumerate(self.fields):
            p = f"spec.fields[{i}]"
            if not f.name:
                out.append(f"{p}.name: required")
            if f.type not in FIELD_TYPES:
                out.append(f"{p}.type: {f.type!r} is not one of {', '.join(FIELD_TYPES)}")
            if f.max_chars < 1:
                out.append(f"{p}.max_chars: must be >= 1")
            if f.scale is not None and f.scale <= 0:
                out.append(f"{p}.scale: must be > 0")
            if not (f.embed or f.compare):
                out.append(f"{p}: embed and compare are both false, the field does nothing")
        for name in sorted({n for n in names if names.count(n) > 1}):
            out.append(f"spec.fields: name {name!r} is used more than once")
        if self.fields and not any(f.embed for f in self.fields):
            out.append("spec.fields: at least one field must have embed=true")
        if not self.left_id:
            out.append("spec.left_id: required")
        b = self.blocking
        if b.k < 1:
            out.append("spec.blocking.k: must be >= 1")
        if not 0 <= b.min_k <= b.k:
            out.append(f"spec.blocking.min_k: must be in [0, k={b.k}]")
        if b.margin < 0:
            out.append("spec.blocking.margin: must be >= 0")
        if not 0 <= b.lexical_weight <= 1:
            out.append("spec.blocking.lexical_weight: must be in [0, 1]")
        if b.lexical_dim < 16:
            out.append("spec.blocking.lexical_dim: must be >= 16")
        if b.lexical_blocking_dim < 16:
            out.append("spec.blocking.lexical_blocking_dim: must be >= 16")
        if b.max_key_block < 1:
            out.append("spec.blocking.max_key_block: must be >= 1")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            out.append("spec.memory_budget_mb: must be > 0")
        for i, key in enumerate(b.keys):
            if not key:
                out.append(f"spec.blocking.keys[{i}]: empty key")
            for name in key:
                if self.fields and name not in names:
                    out.append(
                        f"spec.blocking.keys[{i}]: {name!r} is not a field "
                        f"(fields: {', '.join(names)})"
                    )
        if not 0 <= self.precision <= 1:
            out.append("spec.precision: must be in [0, 1] (0: no constraint, best estimated F1)")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            out.append("spec.threshold: must be in [0, 1]")
        for attr, allowed in (
            ("serialization", SERIALIZATIONS),
            ("reference", REFERENCES),
            ("assignment", ASSIGNMENTS),
            ("classifier", CLASSIFIERS),
            ("cluster", CLUSTER_METHODS),
            ("objective", OBJECTIVES),
        ):
            value = getattr(self, attr)
            if value not in allowed:
                out.append(f"spec.{attr}: {value!r} is not one of {', '.join(allowed)}")
        j = self.llm_judge
        if j is not None:
            if not j.model:
                out.append("spec.llm_judge.model: required")
            if not 0 < j.band <= 1:
                out.append("spec.llm_judge.band: must be in (0, 1]")
            if j.max_pairs < 0:
                out.append("spec.llm_judge.max_pairs: must be >= 0")
            if not 0 <= j.weight <= 1:
                out.append("spec.llm_judge.weight: must be in [0, 1]")
        if not isinstance(self.encoder, dict) or "kind" not in self.encoder:
            out.append("spec.encoder: must be an encoder spec object with a 'kind'")
        else:
            out += _encoder_problems(self.encoder)
        out += _index_kind_problems(b.index_kind)
        return out


def _encoder_problems(encoder: dict[str, Any]) -> list[str]:
    from veclink.encoders import spec_from_dict

    try:
        spec_from_dict(dict(encoder))
    except InvalidArgument as exc:
        return [f"spec.encoder: {exc}"]
    return []


def _index_kind_problems(kind: str) -> list[str]:
    try:
        from veclink.index import INDEX_KINDS
    except ImportError:  # an index package without a registry: checked when blocking
        return []
    if kind not in INDEX_KINDS:
        return [
            f"spec.blocking.index_kind: {kind!r} is not one of {', '.join(sorted(INDEX_KINDS))}"
        ]
    return []


# ------------------------------------------------------------------ generic dict -> dataclass


def _build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from ``data``, appending every problem to ``problems``."""
    if not isinstance(data, dict):
        problems.append(f"{path}: must be an object, got {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    ok = True
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{path}.{key}: unknown key (valid: {', '.join(fields)})")
            ok = False
            continue
        converted, good = _convert(hints[key], value, f"{path}.{key}", problems)
        ok &= good
        kwargs[key] = converted
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and name not in data:
            problems.append(f"{path}.{name}: required")
            ok = False
    return cls(**kwargs) if ok else None


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None, True
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, problems)
    if dataclasses.is_dataclass(tp):
        built = _build(tp, value, path, problems)
        return built, built is not None
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.append(f"{path}: must be a list, got {type(value).__name__}")
            return None, False
        item_tp = typing.get_args(tp)[0]
        items, ok = [], True
        for i, v in enumerate(value):
            item, good = _convert(item_tp, v, f"{path}[{i}]", problems)
            items.append(item)
            ok &= good
        return tuple(items), ok
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: must be an object, got {type(value).__name__}")
            return None, False
        return dict(value), True
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: must be true or false, got {value!r}")
            return None, False
        return value, True
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: must be an integer, got {value!r}")
            return None, False
        return value, True
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: must be a number, got {value!r}")
            return None, False
        return float(value), True
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{path}: must be a string, got {value!r}")
            return None, False
        return value, True
    return value, True
