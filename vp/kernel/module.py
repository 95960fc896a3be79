"""Modules: the named hierarchy of a board (SystemC's ``sc_module``).

A module belongs to a simulator (top level) or to a parent module, has a hierarchical
``full_name`` such as ``board.dma``, and starts its processes with :meth:`Module.spawn` so
they carry that name in traces and errors. No hidden globals: the simulator is passed in.
"""

from __future__ import annotations

from typing import Generator, Iterator

from vp.kernel import _myhdl
from vp.kernel.event import Event
from vp.kernel.sim import Process, Simulator


class Module:
    """A named block in the board hierarchy."""

    def __init__(self, parent: "Module | Simulator", name: str):
        if not name or not name.replace("_", "a").isalnum():
            raise ValueError(f"module name {name!r} must be a non-empty identifier")
        self.name = name
        self.parent = parent if isinstance(parent, Module) else None
        self.sim: Simulator = parent.sim if isinstance(parent, Module) else parent
        self.full_name = f"{parent.full_name}.{name}" if self.parent else name
        self.children: dict[str, Module] = {}
        if self.parent is not None:
            if name in self.parent.children:
                raise ValueError(f"{self.parent.full_name} already has a child named {name!r}")
            self.parent.children[name] = self

    # One simulation per process, so the module's time is the scheduler's (one call, not a
    # chain of properties: models read it on their hot paths).
    now = property(_myhdl.now_of, doc="Current simulated time (ps).")

    def spawn(self, gen: Generator, name: str) -> Process:
        """Start ``gen`` as the process ``<full_name>.<name>``."""
        return self.sim.spawn(gen, f"{self.full_name}.{name}")

    def event(self, name: str) -> Event:
        """A new event named ``<full_name>.<name>``."""
        return Event(f"{self.full_name}.{name}")

    def walk(self) -> Iterator["Module"]:
        """This module and all descendants, depth first."""
        yield self
        for child in self.children.values():
            yield from child.walk()

    def find(self, path: str) -> "Module":
        """The descendant at dotted ``path`` relative to this module."""
        mod = self
        for part in path.split("."):
            try:
                mod = mod.children[part]
            except KeyError:
                raise KeyError(f"{mod.full_name} has no child {part!r} "
                               f"(children: {', '.join(mod.children) or 'none'})") from None
        return mod

    def reset(self) -> None:
        """Return to reset state; the default resets the children."""
        for child in self.children.values():
            child.reset()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.full_name!r})"
