"""A registry maps a source/target vocabulary key (an ATen op, a Keras layer class, an
ONNX op type) to one small handler function. Registering a key twice is an error.

A handler may come with a ``check``: a predicate returning why one particular use of the key
cannot be handled (None when it can). Callers run every check before any handler runs, so
that all such uses are reported in one UnsupportedOpsError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])
Check = Callable[..., "str | None"]


class Registry(Generic[F]):
    """Named key -> handler table with duplicate detection."""

    def __init__(self, name: str):
        self.name = name
        self._handlers: dict[str, F] = {}
        self._checks: dict[str, Check] = {}

    def register(self, *keys: str, check: Check | None = None) -> Callable[[F], F]:
        """Decorator registering ``fn`` (and its ``check``) under every key in ``keys``.

        Args:
            *keys: the vocabulary keys, written out in full.
            check: says why one use of a key cannot be handled (None when it can).

        Returns:
            The decorator; it returns the handler unchanged.

        Raises:
            ValueError: a key already has a handler.
        """

        def deco(fn: F) -> F:
            for key in keys:
                if key in self._handlers:
                    raise ValueError(f"{self.name}: handler for {key!r} registered twice")
                self._handlers[key] = fn
                if check is not None:
                    self._checks[key] = check
            return fn

        return deco

    def check(self, key: str) -> Check | None:
        """The check registered with ``key``'s handler, or None."""
        return self._checks.get(key)

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
