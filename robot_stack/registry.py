"""`Registry`: the one name -> class table behind robots, tasks, policies, dataset formats, transports.

    ROBOTS = Registry("robot", UnknownRobot, attr="kind")

    @ROBOTS.register("sim_panda")      # sets SimPanda.kind = "sim_panda"
    class SimPanda(Robot): ...

    ROBOTS.get("sim_pandaa")  # UnknownRobot: unknown robot 'sim_pandaa'; available: ...; did you mean sim_panda?

`loader` (optional) is called before a lookup or a listing, so packages can import the modules
that register their built-ins lazily.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, error: type[Exception] = KeyError, *, attr: str = "name",
                 loader: Callable[[], None] | None = None):
        self.what, self.error, self.attr, self.loader = what, error, attr, loader
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            setattr(cls, self.attr, name)
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        if self.loader is not None:
            self.loader()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        if name not in self._classes and self.loader is not None:
            self.loader()
        if name not in self._classes:
            close = difflib.get_close_matches(name, list(self._classes), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise self.error(f"unknown {self.what} '{name}'; available: "
                             f"{', '.join(sorted(self._classes)) or 'none'}{hint}")
        return self._classes[name]

    def __contains__(self, name: str) -> bool:
        return name in self._classes
