"""Measure one instruction on a real :class:`~models.core.Core`: simulated time, not formulas.

:class:`CoreProbe` runs ``[OP, END]`` programs on a core and reports how long ``OP`` took:
the run's simulated time minus the program fetch (the core's ``fetch_ps`` counter) minus twice
the cost of a lone ``END`` (measured once, on the same core: issue of ``END`` plus nothing). So
no model constant (issue cycles, unit formulas) enters the measurement.
"""

from __future__ import annotations

from typing import Callable

from vp.spec import isa


class CoreProbe:
    """Runs programs on ``core`` in ``sim``; ``write(address, data)`` stores a program in HBM
    at ``address`` (the same address is reused for every program)."""

    def __init__(self, sim, core, write: Callable[[int, bytes], None], address: int):
        self.sim, self.core, self.write, self.address = sim, core, write, address
        end = isa.Program()
        end.END()
        elapsed, deltas = self._run(end)
        #: Measured cost of one END instruction (issue only), ps.
        self.end_ps = elapsed - deltas["fetch_ps"]

    def _run(self, program: isa.Program) -> tuple[int, dict[str, int]]:
        core, sim = self.core, self.sim
        self.write(self.address, program.to_bytes())
        before, t0 = dict(core.counters), sim.now
        core.launch(self.address, 0)
        sim.run_until_idle()
        if core.busy or core.error:
            raise RuntimeError(f"{core.full_name}: program did not complete "
                               f"(busy={core.busy}, error={core.error})\n"
                               f"{program.disassemble(self.address)}")
        return sim.now - t0, {k: v - before[k] for k, v in core.counters.items()}

    def measure(self, op: str, flags=None, **fields) -> tuple[int, dict[str, int]]:
        """Run ``[op(**fields), END]``; returns (the time ``op`` took in ps, counter deltas)."""
        program = isa.Program()
        program.append(op, flags, **fields)
        program.END()
        elapsed, deltas = self._run(program)
        return elapsed - deltas["fetch_ps"] - 2 * self.end_ps, deltas
