"""A visualizer's registries (its methods, its views): named items in registration order.

Each visualizer owns its own, filled with the built-in items and open to the user's: no
registry is shared between visualizers, so one process may serve several that differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping, Generic[T]):
    """Items by name; registering a taken name needs ``replace=True``."""

    def __init__(self, item_type: type[T], name_of: Callable[[T], str], items: Iterable[T] = ()) -> None:
        self._type = item_type
        self._name_of = name_of
        self._items: dict[str, T] = {}
        for item in items:
            self.register(item)

    def register(self, item: T, *, replace: bool = False) -> T:
        """Add ``item`` (``replace=True`` overrides one of the same name); returns it."""
        if not isinstance(item, self._type):
            raise TypeError(f"expected a {self._type.__name__}, got {type(item).__name__}")
        name = self._name_of(item)
        if name in self._items and not replace:
            raise ValueError(f"{name!r} is already registered (pass replace=True to override it)")
        self._items[name] = item
        return item

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))  # a snapshot: registering while another thread lists is safe

    def __len__(self) -> int:
        return len(self._items)
