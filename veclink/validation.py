"""One validation style for every config: settings, encoder specs, index options, linkage specs.

The type policy is the same wherever a config comes from (JSON, TOML, a Python dict):

- an integer field takes an ``int``: ``True`` is not a count and ``64.0`` is refused (a float
  where an integer belongs is a mistake to report, not a value to truncate);
- a number field (annotated ``float``) takes an ``int`` or a ``float``, never a bool, and
  never NaN or an infinity;
- a bool field takes ``true`` or ``false``; a string field takes a string;
- a list field (``tuple[...]``) takes a list; each item follows the policy;
- an object field (``dict``) takes an object; a nested config is built by the same rules.

A problem reads ``FIELD: must be ..., got VALUE`` with the value quoted by a short prefix.
`Problems` collects every problem of a config so that it is reported at once, in one
`InvalidArgument`; the ``check_*`` functions raise at the first. `build` turns a dict into a
frozen dataclass by the field annotations and `field_problems` checks a built one.

This module imports nothing heavy (no numpy, torch or SQLAlchemy): the client, the CLI and
every spec module import it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from veclink.errors import InvalidArgument

#: characters of a value quoted back in a message
QUOTE_CHARS = 64
#: the model dtypes every encoder accepts
DTYPES = ("fp32", "fp16", "bf16")
#: devices every model accepts besides ``cuda:N``
DEVICES = ("cpu", "cuda", "auto")
#: longest file name component and path most file systems accept (bytes)
MAX_PATH_COMPONENT = 255
MAX_PATH_BYTES = 4096

T = TypeVar("T")


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of at most ``limit`` characters of ``value``, saying how long a string was."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def is_int(value: Any) -> bool:
    """An integer by the policy: an ``int`` that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A number by the policy: a finite ``int`` or ``float`` that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    high = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
    if low and high:
        return f" in {low}, {high}"
    if low:
        return f" >= {ge}" if ge is not None else f" > {gt}"
    if high:
        return f" <= {le}" if le is not None else f" < {lt}"
    return ""


def _in_bounds(
    value: float, ge: float | None, gt: float | None, le: float | None, lt: float | None
) -> bool:
    return (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
        and (lt is None or value < lt)
    )


def int_problem(
    value: Any,
    *,
    ge: int | None = None,
    gt: int | None = None,
    le: int | None = None,
    lt: int | None = None,
) -> str | None:
    """``must be an integer >= 1, got 64.0`` or None when ``value`` is such an integer."""
    if is_int(value) and _in_bounds(value, ge, gt, le, lt):
        return None
    return f"must be an integer{_bounds(ge, gt, le, lt)}, got {quote(value)}"


def number_problem(
    value: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> str | None:
    """``must be a number in [0, 1], got nan`` or None when ``value`` is such a number."""
    if is_number(value) and _in_bounds(value, ge, gt, le, lt):
        return None
    return f"must be a number{_bounds(ge, gt, le, lt)}, got {quote(value)}"


def choice_problem(value: Any, options: Iterable[str]) -> str | None:
    """``must be one of a, b, got 'c'`` or None when ``value`` is one of ``options``."""
    options = tuple(options)
    if isinstance(value, str) and value in options:
        return None
    return f"must be one of {', '.join(options)}, got {quote(value)}"


def device_problem(value: Any, options: Iterable[str] = DEVICES) -> str | None:
    """A device name: one of ``options`` or ``cuda:N``."""
    options = tuple(options)
    if isinstance(value, str) and (
        value in options or (value.startswith("cuda:") and value[5:].isdigit())
    ):
        return None
    return f"must be one of {', '.join(options)} or cuda:N, got {quote(value)}"


def path_problem(value: Any) -> str | None:
    """A path the operating system can be asked about without an OSError (no NUL, not too
    long); whether it exists is the caller's question."""
    if not isinstance(value, str):
        return f"must be a path (a string), got {quote(value)}"
    if "\x00" in value:
        return "contains a NUL character"
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATH_BYTES or any(
        len(part) > MAX_PATH_COMPONENT for part in encoded.split(b"/")
    ):
        return (
            f"{quote(value)} is too long for a file path "
            f"(at most {MAX_PATH_BYTES} bytes, {MAX_PATH_COMPONENT} per name)"
        )
    return None


def _raise(field: str, problem: str | None) -> None:
    if problem is not None:
        raise InvalidArgument(f"{field}: {problem}", field=field)


def check_int(value: Any, field: str, **bounds: int | None) -> int:
    """``value`` if it is an integer within ``bounds`` (ge, gt, le, lt), else InvalidArgument."""
    _raise(field, int_problem(value, **bounds))
    return int(value)


def check_number(value: Any, field: str, **bounds: float | None) -> float:
    """``value`` as a float if it is a finite number within ``bounds``, else InvalidArgument."""
    _raise(field, number_problem(value, **bounds))
    return float(value)


def check_choice(value: Any, field: str, options: Iterable[str]) -> str:
    """``value`` if it is one of ``options``, else InvalidArgument listing them."""
    _raise(field, choice_problem(value, options))
    return str(value)


def check_path(value: Any, field: str) -> str:
    """``value`` if it is a usable path string (see `path_problem`), else InvalidArgument."""
    _raise(field, path_problem(value))
    return str(value)


class Problems:
    """Every problem of one config, collected so that all are reported at once.

    Each check appends ``FIELD: problem`` and returns whether the value passed, so a later
    check that needs a valid value can depend on it.
    """

    def __init__(self) -> None:
        self.items: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, field: str, problem: str | None) -> bool:
        """Record ``problem`` for ``field`` (None: no problem); returns whether it was None."""
        if problem is None:
            return True
        self.items.append(f"{field}: {problem}")
        return False

    def extend(self, problems: Iterable[str]) -> None:
        """Add problems already phrased ``FIELD: problem``."""
        self.items.extend(problems)

    def integer(self, field: str, value: Any, **bounds: int | None) -> bool:
        return self.add(field, int_problem(value, **bounds))

    def number(self, field: str, value: Any, *, optional: bool = False, **bounds: Any) -> bool:
        """A number within ``bounds``; ``optional``: None passes too."""
        if optional and value is None:
            return True
        return self.add(field, number_problem(value, **bounds))

    def choice(self, field: str, value: Any, options: Iterable[str]) -> bool:
        return self.add(field, choice_problem(value, options))

    def device(self, field: str, value: Any, options: Iterable[str] = DEVICES) -> bool:
        return self.add(field, device_problem(value, options))

    def path(self, field: str, value: Any) -> bool:
        return self.add(field, path_problem(value))

    def required(self, field: str, value: Any) -> bool:
        """A value that must not be empty (a name, a model, a path)."""
        return self.add(field, None if value else "required")

    def raise_if_any(self, what: str, field: str) -> None:
        """Raise one InvalidArgument ``what: p1; p2; ...`` naming ``field``, if any."""
        if self.items:
            prefix = f"{what}: " if what else ""
            raise InvalidArgument(prefix + "; ".join(self.items), field=field)


# ------------------------------------------------------------------ dict -> dataclass


def build(cls: type[T], data: Any, path: str, problems: Problems) -> T | None:
    """Build dataclass ``cls`` from the dict ``data`` by its field annotations.

    Unknown keys, missing required fields and values of the wrong type (by the policy
    above) go to ``problems`` under ``path.KEY``; lists become tuples and nested
    dataclasses are built the same way. Returns None when a value is missing or of the wrong
    type; with only unknown keys it returns the dataclass of the known ones, so that its
    values can be checked too and every problem reported at once.
    """
    if not isinstance(data, Mapping):
        problems.add(path, f"must be an object, got {quote(data)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    ok = True
    for key, value in data.items():
        if key not in fields:  # reported, but the rest is still built and checked
            problems.add(f"{path}.{key}", f"unknown key (valid: {', '.join(fields)})")
            continue
        converted, good = convert(hints[key], value, f"{path}.{key}", problems)
        ok &= good
        kwargs[key] = converted
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and name not in data:
            ok = problems.add(f"{path}.{name}", "required") and ok
    return cls(**kwargs) if ok else None


def field_problems(obj: Any, path: str) -> list[str]:
    """The type problems of a dataclass instance built in Python (not through `build`)."""
    problems = Problems()
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        convert(hints[f.name], getattr(obj, f.name), f"{path}.{f.name}", problems)
    return problems.items


def convert(tp: Any, value: Any, path: str, problems: Problems) -> tuple[Any, bool]:
    """``value`` checked (and lists made tuples) against annotation ``tp``; ``(value, ok)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None, True
        inner = [a for a in args if a is not type(None)]
        return convert(inner[0], value, path, problems)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # type: ignore[arg-type]
            nested = field_problems(value, path)
            problems.extend(nested)
            return value, not nested
        built = build(tp, value, path, problems)  # type: ignore[arg-type]
        return built, built is not None
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.add(path, f"must be a list, got {quote(value)}")
            return None, False
        item_tp = typing.get_args(tp)[0]
        items, ok = [], True
        for i, v in enumerate(value):
            item, good = convert(item_tp, v, f"{path}[{i}]", problems)
            items.append(item)
            ok &= good
        return tuple(items), ok
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            problems.add(path, f"must be an object, got {quote(value)}")
            return None, False
        return dict(value), True
    if tp is bool:
        if not isinstance(value, bool):
            problems.add(path, f"must be true or false, got {quote(value)}")
            return None, False
        return value, True
    if tp is int:
        return value, problems.integer(path, value)
    if tp is float:
        ok = problems.number(path, value)
        return (float(value) if ok else None), ok
    if tp is str:
        if not isinstance(value, str):
            problems.add(path, f"must be a string, got {quote(value)}")
            return None, False
        return value, True
    return value, True
