"""Named components looked up by string (`@register("bert-mini")`), listing valid names on a miss."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from fmloop.core.errors import FmloopError, ModelError

T = TypeVar("T")


class Catalog(Generic[T]):
    """A name -> factory table for one kind of component (model presets, objectives, ...)."""

    def __init__(self, kind: str, error: type[FmloopError] = ModelError):
        self.kind = kind
        self._error = error
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def decorator(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            self._help[name] = help or (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
            return factory

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise self._error(f"Unknown {self.kind} {name!r}.{hint} Valid names: {', '.join(self.names())}.") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        return {name: self._help[name] for name in self.names()}
