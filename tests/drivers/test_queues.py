"""Command queues end to end over every transport: rings in HBM, doorbells, packets, fences,
semaphores, DMA descriptors, and what a bad packet gets."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.queue import CommandQueue, QueueError
from vp.spec import isa
from vp.spec.board_config import load_board
from vp.spec.regmap import ErrCode
from vp.spec.units import MS, NS, US

CFG = load_board(None)
RING = CFG.hbm.base + 0x10_0000
MiB = 1 << 20


@pytest.fixture
def queue(device):
    return CommandQueue(device, 0, RING, 4096)


def test_fence_completes_and_raises_cp_fence(queue, device):
    queue.submit(isa.encode_packet("NOP"), isa.encode_packet("NOP"))
    value = queue.fence()
    queue.wait_fence(value, 10 * US)
    assert device.read_reg("cp.FENCE[0]") == value
    assert device.read_reg("cp.HEAD[0]") == queue.tail
    assert not device.read_field("cp.Q_STATUS[0]", "BUSY")


def test_a_new_owner_of_a_queue_waits_for_its_own_fences(queue, device):
    """A queue reset keeps cp.FENCE: a second CommandQueue on the same ring must not take the
    first owner's fence values for its own (its sync must wait for its own packets)."""
    for _ in range(3):
        queue.sync(10 * US)
    second = CommandQueue(device, 0, RING, 4096)
    stamp = RING + 8192
    device.write_mem(stamp, np.zeros(8, np.uint8))
    second.submit(isa.encode_packet("TIMESTAMP", address=stamp))
    value = second.fence()
    assert value == 4
    second.wait_fence(value, 10 * US)
    assert device.read_mem(stamp, 8).view("<u8")[0] > 0


def test_fence_comparison_wraps_around():
    from drivers.queue import _reached
    assert _reached(5, 5) and _reached(6, 5) and not _reached(4, 5)
    assert _reached(2, 0xFFFF_FFF0) and not _reached(0xFFFF_FFF0, 2)


def test_dma_packet_copies_strided_rows(queue, device):
    src, dst = CFG.hbm.base + 0x20_0000, CFG.hbm.base + 0x40_0000
    image = np.arange(64 * 256, dtype=np.uint8).reshape(64, 256)
    device.write_mem(src, image)
    # Copy the left 128 columns of every other row into a packed 32 x 128 block.
    queue.submit(isa.encode_packet("DMA", src=src, dst=dst, row_bytes=128, rows=32,
                                   src_stride=512, dst_stride=128))
    queue.sync(MS)
    got = device.read_mem(dst, 32 * 128).reshape(32, 128)
    assert np.array_equal(got, image[::2, :128])


def test_dma_packet_time_follows_the_engine_formula(queue, device):
    nbytes = 2 * MiB
    t0 = device.now_ps
    queue.submit(isa.encode_packet("DMA", src=CFG.hbm.base, dst=CFG.hbm.base + 8 * MiB,
                                   row_bytes=nbytes, rows=1, src_stride=nbytes,
                                   dst_stride=nbytes),
                 isa.encode_packet("TIMESTAMP", address=CFG.hbm.base + 0x8000))
    queue.sync(MS)
    stamp_ns = int(device.read_mem(CFG.hbm.base + 0x8000, 8).view("<u8")[0])
    engine_ps = CFG.dma.latency_ps + -(-nbytes * 10**12 // CFG.dma.bandwidth)
    assert stamp_ns * NS >= t0 + engine_ps            # never faster than the engine
    assert stamp_ns * NS < t0 + engine_ps + 20 * US   # plus doorbell, fetch and dispatch


def test_semaphore_between_queues_and_host(device):
    q0, q1 = CommandQueue(device, 0, RING, 4096), CommandQueue(device, 1, RING + 4096, 4096)
    q0.submit(isa.encode_packet("SEM_WAIT", sem=3, value=2))
    f0 = q0.fence()
    q1.submit(isa.encode_packet("SEM_SIGNAL", sem=3, value=1))
    q1.sync(MS)
    assert device.read_reg("cp.FENCE[0]") < f0          # still blocked: sem = 1 < 2
    device.write_reg("cp.SEM[3]", 2)                    # the host tops it up
    q0.wait_fence(f0, MS)
    assert device.read_reg("cp.SEM[3]") == 0


def test_ring_wraps_around(queue, device):
    for _ in range(300):       # 300 x (NOP 4 B + FENCE 8 B) = 3.6 KB per lap, 4 KB ring
        queue.submit(isa.encode_packet("NOP"))
        queue.sync(MS)
    assert device.read_reg("cp.FENCE[0]") == 300


def test_irq_packet_raises_software_interrupt(queue, device):
    queue.submit(isa.encode_packet("IRQ", bits=device.irq_mask("SW")))
    assert device.wait_irq(device.irq_mask("SW"), MS) == device.irq_mask("SW")


@pytest.mark.parametrize("packet,code,opcode", [
    (np.array([0x0000_017F], "<u4").tobytes(), ErrCode.BAD_OPCODE, None),
    (isa.encode_packet("DMA", src=0, dst=CFG.hbm.size, row_bytes=64, rows=1, src_stride=64,
                       dst_stride=64), ErrCode.DESC_RANGE, "DMA"),
    (isa.encode_packet("LAUNCH", core_mask=1 << 63, program=0, arg=0), ErrCode.BAD_CORE, "LAUNCH"),
    (isa.encode_packet("SEM_SIGNAL", sem=99, value=1), ErrCode.MALFORMED_PACKET, "SEM_SIGNAL"),
])
def test_bad_packet_stops_the_queue_with_a_named_error(queue, device, packet, code, opcode):
    queue.submit(isa.encode_packet("NOP"), packet)
    with pytest.raises(QueueError) as info:
        queue.sync(10 * MS)
    err = info.value
    assert (err.queue, err.offset, err.code, err.opcode) == (0, 4, code, opcode)
    assert "queue 0: packet at ring offset 0x4" in str(err) and code.name in str(err)
    assert device.read_reg("irq.INT_STATUS") & device.irq_mask("CP_ERROR")
    assert device.last_error()["source"] == 2          # CP
    queue.reset()                                      # recovery: the queue runs again
    device.clear_error()
    queue.submit(isa.encode_packet("NOP"))
    queue.sync(MS)


def test_malformed_length_is_reported(queue, device):
    header = (isa.PACKETS["FENCE"].code | 5 << 8)    # FENCE claims 5 words
    queue.submit(np.array([header, 1, 0, 0, 0], "<u4").tobytes())
    with pytest.raises(QueueError, match="MALFORMED_PACKET"):
        queue.sync(MS)


def test_watchdog_reports_a_deadlocked_semaphore(queue, device):
    queue.submit(isa.encode_packet("SEM_WAIT", sem=0, value=1))
    with pytest.raises(QueueError, match="DEADLOCK") as info:
        queue.sync(2 * CFG.cp.watchdog + MS)
    assert info.value.opcode == "SEM_WAIT"


def test_doorbell_on_a_disabled_queue_is_a_guest_error(device):
    device.write_reg("db.DOORBELL[5]", 16)
    err = device.last_error()
    assert err["code"] == ErrCode.QUEUE_DISABLED and err["syndrome"] == 5


def test_ring_outside_hbm_is_refused(device):
    with pytest.raises(QueueError, match="DESC_RANGE"):
        CommandQueue(device, 2, CFG.hbm.base + CFG.hbm.size - 1024, 4096)


def test_board_reset_recovers_a_stuck_queue(queue, device):
    queue.submit(isa.encode_packet("SEM_WAIT", sem=1, value=1))
    device.reset()
    assert device.read_reg("cp.Q_STATUS[0]") == 0
    q = CommandQueue(device, 0, RING, 4096)
    q.submit(isa.encode_packet("NOP"))
    q.sync(MS)


def test_misaligned_ring_is_refused(device):
    with pytest.raises(QueueError, match="MISALIGNED"):
        CommandQueue(device, 3, RING + 2, 4096)


def test_dma_between_host_memory_and_hbm(queue, device):
    """Pinned host buffers at HOST_BASE: the host fills them over the link, a DMA descriptor
    copies them into HBM at no more than the link's rate, and back out."""
    from vp.spec.memory_map import HOST_BASE
    data = np.random.default_rng(9).integers(0, 256, 1 << 20, dtype=np.uint8)
    device.write_mem(HOST_BASE + 0x1000, data)
    t0 = device.now_ps
    queue.submit(isa.encode_packet("DMA", src=HOST_BASE + 0x1000, dst=CFG.hbm.base + 0x80_0000,
                                   row_bytes=len(data), rows=1, src_stride=len(data),
                                   dst_stride=len(data)),
                 isa.encode_packet("DMA", src=CFG.hbm.base + 0x80_0000, dst=HOST_BASE + 0x20_0000,
                                   row_bytes=len(data), rows=1, src_stride=len(data),
                                   dst_stride=len(data)))
    queue.sync(10 * MS)
    assert np.array_equal(device.read_mem(CFG.hbm.base + 0x80_0000, len(data)), data)
    assert np.array_equal(device.read_mem(HOST_BASE + 0x20_0000, len(data)), data)
    link_ps = -(-len(data) * 10**12 // CFG.host_link.bandwidth)
    assert device.now_ps - t0 > 2 * link_ps         # each copy crosses the link once
    with pytest.raises(QueueError, match="DESC_RANGE"):
        queue.submit(isa.encode_packet("DMA", src=HOST_BASE + CFG.host_link.window - 8,
                                       dst=CFG.hbm.base, row_bytes=64, rows=1, src_stride=64,
                                       dst_stride=64))
        queue.sync(MS)
