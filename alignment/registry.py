"""Named implementations of one interface, chosen by a config value (KL estimators, safety backends).

A registry is a dict from the name a config spells to the implementation; ``@REGISTRY.register("name")``
adds one where it is defined, so adding an estimator or a backend is one decorated function, and the
schema's enum of valid names is checked against the registry by the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """``name -> implementation``, filled by :meth:`register`; ``kind`` names the interface in errors."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its function (or class) under ``name``, once."""

        def add(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = obj
            return obj

        return add
