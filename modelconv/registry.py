"""A registry maps a source/target vocabulary key (an ATen op, a Keras layer class, an
ONNX op type) to one small handler function. Registering a key twice is an error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Named key -> handler table with duplicate detection."""

    def __init__(self, name: str):
        self.name = name
        self._handlers: dict[str, F] = {}

    def register(self, *keys: str) -> Callable[[F], F]:
        """Decorator registering ``fn`` under every key in ``keys``."""

        def deco(fn: F) -> F:
            for key in keys:
                if key in self._handlers:
                    raise ValueError(f"{self.name}: handler for {key!r} registered twice")
                self._handlers[key] = fn
            return fn

        return deco

    def get(self, key: str) -> F | None:
        """The handler for ``key`` or None."""
        return self._handlers.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def __len__(self) -> int:
        return len(self._handlers)

    def keys(self) -> list[str]:
        """Sorted registered keys."""
        return sorted(self._handlers)
