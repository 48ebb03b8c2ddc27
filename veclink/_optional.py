"""Import heavy optional dependencies through one helper that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from veclink.errors import MissingDependency


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingDependency telling how to install it.

    Args:
        module: dotted module name, e.g. ``"peft"``.
        extra: the veclink extra that provides it, e.g. ``"llm"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{module!r} is not installed; install it with: pip install 'veclink[{extra}]'"
        ) from exc
