"""What the compiler targets: the board's cores by role, from the board's own description.

A :class:`Target` is built from a :class:`~vp.spec.board_config.BoardConfig` (the board sends
it at open: ``Device.board``; ``npuvp compile`` reads a board file) and a *placement*:

* ``afd`` (attention-FFN disaggregation): attention runs on the CA cores, every projection,
  the FFN, norms, embeddings and the LM head on the CF cores; micro-batches ping-pong between
  the two groups (while the CA cores attend micro-batch *i*, the CF cores run the dense work
  of micro-batch *i + 1*). Needs a board with both CA and CF cores.
* ``unified``: every core does both kinds of work, one phase after the other (the homogeneous
  baseline the disaggregated design must beat). Works on any board.

Host-side code: imports only ``vp.spec``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vp.spec.board_config import BoardConfig

PLACEMENTS = ("afd", "unified")


class CompileError(ValueError):
    """A model, board or request the compiler cannot map (the message names what and why)."""


@dataclass(frozen=True)
class CoreInfo:
    """One core as the compiler sees it: global id, kind, SRAM bytes, matrix-unit shape."""

    id: int
    kind: str
    sram_bytes: int
    matrix_rows: int
    matrix_cols: int


@dataclass(frozen=True)
class Target:
    """The cores of one board, split into the dense group and the attention group.

    ``dense`` and ``attention`` are tuples of core ids (equal for ``unified``); ``clock_hz``
    is the chip clock; ``hbm_base``/``hbm_size`` in bytes; ``performance`` is True on a board
    in performance mode (no data: weights are not uploaded, results are not read).
    """

    board_name: str
    placement: str
    cores: tuple[CoreInfo, ...]
    dense: tuple[int, ...]
    attention: tuple[int, ...]
    clock_hz: int
    hbm_base: int
    hbm_size: int
    performance: bool

    @classmethod
    def from_board(cls, board: BoardConfig, placement: str = "afd") -> "Target":
        if placement not in PLACEMENTS:
            raise CompileError(f"unknown placement {placement!r} (expected one of "
                               f"{', '.join(PLACEMENTS)})")
        kinds = board.cores.kinds()
        cores = []
        for core_id, kind in enumerate(kinds):
            k = getattr(board.cores, kind)
            cores.append(CoreInfo(core_id, kind, k.sram, k.matrix_rows, k.matrix_cols))
        if not cores:
            raise CompileError(f"board {board.name!r} has no cores")
        ids = tuple(c.id for c in cores)
        if placement == "afd":
            ca = tuple(c.id for c in cores if c.kind == "ca")
            cf = tuple(c.id for c in cores if c.kind == "cf")
            if not ca or not cf:
                have = ", ".join(f"{kinds.count(k)} {k.upper()}" for k in sorted(set(kinds)))
                raise CompileError(
                    f"placement 'afd' needs CA (attention) and CF (FFN) cores; board "
                    f"{board.name!r} has {have} (use --placement unified)")
            dense, attention = cf, ca
        else:
            dense = attention = ids
        return cls(board.name, placement, tuple(cores), dense, attention, board.chip.clock,
                   board.hbm.base, board.hbm.size, board.mode == "performance")

    def core(self, core_id: int) -> CoreInfo:
        return self.cores[core_id]

    @property
    def active(self) -> tuple[int, ...]:
        """Every core a step launches, ascending."""
        return tuple(sorted(set(self.dense) | set(self.attention)))

    @staticmethod
    def mask(ids) -> int:
        """Core mask with bit i set for each core id i."""
        m = 0
        for i in ids:
            m |= 1 << i
        return m

    @property
    def disaggregated(self) -> bool:
        return self.placement == "afd"
