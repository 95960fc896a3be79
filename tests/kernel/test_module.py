"""Modules: hierarchical names, children, find/walk, process naming and reset."""

from __future__ import annotations

import pytest

from vp.kernel import Module, ProcessError


def build(sim):
    board = Module(sim, "board")
    dma = Module(board, "dma")
    ch0 = Module(dma, "ch0")
    ch1 = Module(dma, "ch1")
    hbm = Module(board, "hbm")
    return board, dma, ch0, ch1, hbm


def test_hierarchical_names_and_parents(sim):
    board, dma, ch0, ch1, hbm = build(sim)
    assert [m.full_name for m in (board, dma, ch0, ch1, hbm)] == \
        ["board", "board.dma", "board.dma.ch0", "board.dma.ch1", "board.hbm"]
    assert board.parent is None and dma.parent is board and ch0.parent is dma
    assert all(m.sim is sim for m in (board, dma, ch0, hbm))
    assert board.children == {"dma": dma, "hbm": hbm}
    assert repr(ch1) == "Module('board.dma.ch1')"


def test_duplicate_child_names_refused(sim):
    board, dma, *_ = build(sim)
    with pytest.raises(ValueError, match=r"board\.dma already has a child named 'ch0'"):
        Module(dma, "ch0")
    assert len(dma.children) == 2
    Module(board, "ch0")          # the same short name elsewhere is fine


@pytest.mark.parametrize("name", ["", "a.b", "x-y", "two words"])
def test_bad_module_names_refused(sim, name):
    with pytest.raises(ValueError, match="must be a non-empty identifier"):
        Module(sim, name)


def test_find_and_walk(sim):
    board, dma, ch0, ch1, hbm = build(sim)
    assert board.find("dma.ch1") is ch1
    assert board.find("hbm") is hbm
    assert dma.find("ch0") is ch0
    with pytest.raises(KeyError, match=r"board\.dma has no child 'ch9' \(children: ch0, ch1\)"):
        board.find("dma.ch9")
    with pytest.raises(KeyError, match=r"board\.hbm has no child 'x' \(children: none\)"):
        board.find("hbm.x")
    assert [m.full_name for m in board.walk()] == \
        ["board", "board.dma", "board.dma.ch0", "board.dma.ch1", "board.hbm"]


def test_module_processes_carry_the_hierarchical_name(sim):
    board, dma, ch0, *_ = build(sim)
    seen = []

    def worker():
        yield sim.delay(15)
        seen.append(ch0.now)

    proc = ch0.spawn(worker(), "engine")
    assert proc.name == "board.dma.ch0.engine"
    assert proc in sim.processes
    sim.run_until_idle()
    assert seen == [15] and proc.done


def test_module_process_errors_name_the_module(sim):
    _, _, _, ch1, _ = build(sim)

    def worker():
        yield sim.delay(1)
        raise KeyError("descriptor")

    ch1.spawn(worker(), "fetch")
    with pytest.raises(ProcessError, match=r"'board\.dma\.ch1\.fetch' raised KeyError"):
        sim.run_until_idle()


class Counter(Module):
    def __init__(self, parent, name):
        super().__init__(parent, name)
        self.count = 0
        self.resets = 0

    def reset(self):
        self.count = 0
        self.resets += 1
        super().reset()


def test_reset_reaches_every_descendant(sim):
    top = Module(sim, "top")
    a = Counter(top, "a")
    b = Counter(a, "b")
    c = Counter(Module(top, "plain"), "c")
    for m in (a, b, c):
        m.count = 5
    top.reset()
    assert [(m.count, m.resets) for m in (a, b, c)] == [(0, 1), (0, 1), (0, 1)]
