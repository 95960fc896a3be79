"""Board assembly: what the built board is made of, independent of any transport."""

from __future__ import annotations

import numpy as np
import pytest

from vp.board import Board
from vp.host_port import HostPort
from vp.kernel import SimulationError
from vp.spec.host import RegOp
from vp.spec.regmap import REGMAP


@pytest.fixture
def board():
    b = Board.from_file(None)
    try:
        yield b
    finally:
        b.close()


def test_bar_decodes_every_block_of_the_register_map(board):
    mapped = {name: (base, size) for name, base, size in board.hostif.bar.ranges()}
    for block in REGMAP.blocks:
        assert mapped[block.name] == (block.offset, block.size)


def test_huge_hbm_allocates_only_touched_pages(board):
    assert board.hbm.size == board.config.hbm.size >= 64 << 30
    assert board.hbm.store.allocated_bytes == 0
    port = HostPort(board)
    port.write_mem(board.hbm.size - 1, 1, [np.array([9], np.uint8)])
    port.write_mem(0, 1, [np.array([9], np.uint8)])
    assert board.hbm.store.allocated_bytes == 2 * board.hbm.store.page_bytes


def test_module_hierarchy_names(board):
    names = {m.full_name for m in board.top.walk()}
    assert {"board", "board.irq", "board.err", "board.hbm", "board.bus", "board.dma",
            "board.sysctl", "board.hostif", "board.hostif.bar"} <= names
    assert all(p.name.startswith("board.") for p in board.sim.processes)


def test_soft_reset_aborts_a_running_dma(board):
    port = HostPort(board)
    reg = lambda name: REGMAP.reg(name).address
    port.reg_batch([RegOp(True, reg("dma.DST_LO"), 1 << 20), RegOp(True, reg("dma.LEN"), 1 << 20),
                    RegOp(True, reg("dma.CTRL"), 3)])
    assert board.dma.transfer is not None
    port.reg_batch([RegOp(True, reg("rst.RESET_CTRL"), 1)])
    assert board.dma.transfer is None
    pending, _ = port.wait_irq(0xFFFF_FFFF, 10**9)   # the abandoned copy never completes
    assert pending == 0 and board.dma.transfers_done == 0


def test_one_board_per_process(board):
    with pytest.raises(SimulationError, match="already active"):
        Board.from_file(None)
