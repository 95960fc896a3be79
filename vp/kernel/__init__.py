"""SystemC-style transaction-level kernel on MyHDL's scheduler.

Concepts, one module each: simulated time in integer ps (:mod:`.time`), the simulator and its
processes (:mod:`.sim`), events (:mod:`.event`), modules (:mod:`.module`), the generic payload
(:mod:`.payload`), sockets and DMI (:mod:`.socket`), the address router (:mod:`.router`), the
quantum keeper (:mod:`.quantum`) and the sparse backing store (:mod:`.memory`). Only
:mod:`._myhdl` touches MyHDL's internals.
"""

from vp.kernel.event import Event
from vp.kernel.memory import MemoryTarget, SparseMemory
from vp.kernel.module import Module
from vp.kernel.payload import Command, Payload, Response, as_bytes
from vp.kernel.quantum import QuantumKeeper
from vp.kernel.router import AddressMapError, Router
from vp.kernel.sim import Process, ProcessError, SimulationError, Simulator, StopReason
from vp.kernel.socket import DmiRegion, InitiatorSocket, TargetSocket
from vp.kernel.time import MS, NS, PS, SEC, US, format_time, transfer_ps

__all__ = ["Event", "MemoryTarget", "SparseMemory", "Module", "Command", "Payload", "Response", "as_bytes",
           "QuantumKeeper", "AddressMapError", "Router", "Process", "ProcessError",
           "SimulationError", "Simulator", "StopReason", "DmiRegion", "InitiatorSocket",
           "TargetSocket", "PS", "NS", "US", "MS", "SEC", "format_time", "transfer_ps"]
