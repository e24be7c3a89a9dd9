"""Package attributes loaded on first use, so that a package's settings import without torch and its
work (torch, transformers) loads only when a caller asks for it."""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, sources: dict[str, str]) -> Callable[[str], Any]:
    """A module-level __getattr__ for `package`: attribute name -> the module that defines it."""

    def __getattr__(name: str) -> Any:
        if name in sources:
            return getattr(import_module(sources[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
