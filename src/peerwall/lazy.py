"""Names a package exports but imports only when first used (PEP 562), so that importing one
submodule, or the CLI's ``--help``, does not load the whole core: a command pays for what it runs.

A package lists ``{name: "module"}`` (or ``"module:attribute"`` where the name differs) and sets
``__getattr__`` return ``lazy.exports(__name__, that_mapping)(name)``; a ``typing.TYPE_CHECKING`` block imports the
same names for type checkers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exports"]


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package`` for the names in ``where``."""

    def __getattr__(name: str) -> Any:
        found = where.get(name)
        if found is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = found.partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        setattr(sys.modules[package], name, value)  # once loaded, a plain attribute
        return value

    return __getattr__
