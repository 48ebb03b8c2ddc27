"""`LinkageSpec`: what a linkage job compares and how, validated as a whole.

A spec is a tree of frozen keyword-only dataclasses with a JSON round-trip. ``from_dict``
reports every mistake at once (unknown keys, wrong types, bad values, duplicate field
names), in the form ``path: problem``, so a user fixes a spec in one go.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from veclink.errors import InvalidArgument
from veclink.validation import Problems, build, field_problems

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
        found = Problems()
        if isinstance(data, dict):
            data = cls._legacy(data)
        spec = build(cls, data, "spec", found)
        if spec is not None:
            found.extend(spec.problems())
        found.raise_if_any("invalid linkage spec", "spec")
        assert spec is not None  # build returns None only with a problem recorded
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
        typed = field_problems(self, "spec")
        if typed:  # the value checks below compare values of the right types
            return typed
        p = Problems()
        names = [f.name for f in self.fields]
        for i, f in enumerate(self.fields):
            path = f"spec.fields[{i}]"
            p.required(f"{path}.name", f.name)
            p.choice(f"{path}.type", f.type, FIELD_TYPES)
            p.integer(f"{path}.max_chars", f.max_chars, ge=1)
            p.number(f"{path}.scale", f.scale, optional=True, gt=0)
            if not (f.embed or f.compare):
                p.add(path, "embed and compare are both false, the field does nothing")
        for name in sorted({n for n in names if names.count(n) > 1}):
            p.add("spec.fields", f"name {name!r} is used more than once")
        if self.fields and not any(f.embed for f in self.fields):
            p.add("spec.fields", "at least one field must have embed=true")
        p.required("spec.left_id", self.left_id)
        b = self.blocking
        if p.integer("spec.blocking.k", b.k, ge=1):
            p.integer("spec.blocking.min_k", b.min_k, ge=0, le=b.k)
        p.number("spec.blocking.margin", b.margin, ge=0)
        p.number("spec.blocking.lexical_weight", b.lexical_weight, ge=0, le=1)
        p.integer("spec.blocking.lexical_dim", b.lexical_dim, ge=16)
        p.integer("spec.blocking.lexical_blocking_dim", b.lexical_blocking_dim, ge=16)
        p.integer("spec.blocking.max_key_block", b.max_key_block, ge=1)
        p.number("spec.memory_budget_mb", self.memory_budget_mb, optional=True, gt=0)
        for i, key in enumerate(b.keys):
            if not key:
                p.add(f"spec.blocking.keys[{i}]", "empty key")
            for name in key:
                if self.fields and name not in names:
                    p.add(
                        f"spec.blocking.keys[{i}]",
                        f"{name!r} is not a field (fields: {', '.join(names)})",
                    )
        if not p.number("spec.precision", self.precision, ge=0, le=1):
            p.items[-1] += " (0: no constraint, best estimated F1)"
        p.number("spec.threshold", self.threshold, optional=True, ge=0, le=1)
        for attr, allowed in (
            ("serialization", SERIALIZATIONS),
            ("reference", REFERENCES),
            ("assignment", ASSIGNMENTS),
            ("classifier", CLASSIFIERS),
            ("cluster", CLUSTER_METHODS),
            ("objective", OBJECTIVES),
        ):
            p.choice(f"spec.{attr}", getattr(self, attr), allowed)
        j = self.llm_judge
        if j is not None:
            p.required("spec.llm_judge.model", j.model)
            p.number("spec.llm_judge.band", j.band, gt=0, le=1)
            p.integer("spec.llm_judge.max_pairs", j.max_pairs, ge=0)
            p.number("spec.llm_judge.weight", j.weight, ge=0, le=1)
            p.device("spec.llm_judge.device", j.device)
        if "kind" not in self.encoder:
            p.add("spec.encoder", "must be an encoder spec object with a 'kind'")
        else:
            p.extend(_encoder_problems(self.encoder))
        p.extend(_index_kind_problems(b.index_kind))
        return p.items


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
    p = Problems()
    p.choice("spec.blocking.index_kind", kind, sorted(INDEX_KINDS))
    return p.items
