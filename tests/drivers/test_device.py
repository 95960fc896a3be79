"""The driver against the board, over every transport: registers, memory, DMA, interrupts,
time and reset."""

from __future__ import annotations

import numpy as np
import pytest

import drivers
from drivers.example import dma_copy
from vp.spec.board_config import load_board
from vp.spec.regmap import DEVICE_ID, REGMAP, VERSION_MAJOR, ErrCode
from vp.spec.units import NS, transfer_ps

CFG = load_board(None)  # the default board both transports serve
LINK = CFG.host_link.latency_ps
MiB = 1 << 20


def test_identity(device):
    info = device.info
    assert info.board_name == CFG.name
    assert info.device_id == DEVICE_ID == device.read_reg("id.ID")
    assert device.read_field("id.VERSION", "MAJOR") == VERSION_MAJOR
    assert info.hbm_size == CFG.hbm.size
    size = device.read_reg("id.HBM_SIZE_LO") | device.read_reg("id.HBM_SIZE_HI") << 32
    assert size == CFG.hbm.size


def test_register_round_trip_and_fields(device):
    device.write_reg("id.SCRATCH", 0xA5A5_5A5A)
    assert device.read_reg("id.SCRATCH") == 0xA5A5_5A5A
    device.write_fields("dma.CTRL", IRQ_EN=0)
    assert device.read_field("dma.CTRL", "IRQ_EN") == 0
    device.write_fields("dma.CTRL", IRQ_EN=1)
    assert device.read_reg("dma.CTRL") == REGMAP.reg("dma.CTRL").field("IRQ_EN").mask


def test_batch_executes_in_order(device):
    b = device.batch()
    b.write("id.SCRATCH", 1)
    first = b.read("id.SCRATCH")
    b.write("id.SCRATCH", 2)
    second = b.read("id.SCRATCH")
    values = b.execute()
    assert (values[first], values[second]) == (1, 2)


def test_each_register_access_costs_the_link_latency(device):
    t0 = device.now_ps
    device.read_reg("id.SCRATCH")
    assert device.now_ps - t0 == LINK
    b = device.batch()
    for _ in range(10):
        b.read("id.SCRATCH")
    b.execute()
    assert device.now_ps - t0 == 11 * LINK


@pytest.mark.parametrize("dtype,count,offset", [(np.uint8, 1, 0), (np.float32, 1000, 3),
                                                 (np.int64, (9 * MiB) // 8, 0x10_0000)])
def test_memory_round_trip_and_time(device, dtype, count, offset):
    data = (np.arange(count) * 2654435761 % 251).astype(dtype)
    t0 = device.now_ps
    device.write_mem(CFG.hbm.base + offset, data)
    assert device.now_ps - t0 == LINK + transfer_ps(data.nbytes, CFG.host_link.bandwidth)
    back = device.read_mem(CFG.hbm.base + offset, data.nbytes)
    assert back.dtype == np.uint8 and np.array_equal(back.view(dtype), data)


def test_unwritten_memory_reads_zero(device):
    assert not device.read_mem(CFG.hbm.base + CFG.hbm.size - 4096, 4096).any()


def test_dma_copies_bytes_in_the_configured_time(device):
    nbytes = 3 * MiB + 5
    data = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8)
    src, dst = CFG.hbm.base + 0x1000, CFG.hbm.base + 0x4000_0000
    device.write_mem(src, data)
    took = dma_copy(device, src, dst, nbytes)
    # The START write completes at t0; the interrupt fires at t0 + latency + bytes/bandwidth.
    assert took == CFG.dma.latency_ps + transfer_ps(nbytes, CFG.dma.bandwidth)
    assert np.array_equal(device.read_mem(dst, nbytes), data)
    assert device.read_reg("dma.BYTES") == nbytes
    assert device.read_reg("dma.STATUS") == 0          # DONE acknowledged, not busy
    assert device.read_reg("irq.INT_STATUS") == 0


def test_polling_status_never_hangs_the_board(device):
    device.write_mem(CFG.hbm.base, np.ones(1 << 20, np.uint8))
    b = device.batch()
    for reg, value in (("dma.SRC_LO", 0), ("dma.DST_LO", 1 << 24), ("dma.LEN", 1 << 20)):
        b.write(reg, value)
    b.execute()
    device.write_fields("dma.CTRL", START=1)
    polls = 0
    while device.read_field("dma.STATUS", "BUSY"):
        polls += 1
        assert polls < 10_000
    expected_polls = (CFG.dma.latency_ps + transfer_ps(1 << 20, CFG.dma.bandwidth)) // LINK
    assert polls == expected_polls
    assert device.read_field("dma.STATUS", "DONE") == 1


@pytest.mark.parametrize("setup,code", [
    ({"dma.LEN": 0}, ErrCode.DMA_LENGTH),
    ({"dma.SRC_LO": (CFG.hbm.base + CFG.hbm.size - 0x1000) & 0xFFFF_FFFF,
      "dma.SRC_HI": (CFG.hbm.base + CFG.hbm.size - 0x1000) >> 32, "dma.LEN": 0x2000},
     ErrCode.DMA_RANGE),
    ({"dma.DST_HI": (CFG.hbm.base + CFG.hbm.size) >> 32, "dma.LEN": 16}, ErrCode.DMA_RANGE),
])
def test_dma_errors_raise_error_irq_and_record(device, setup, code):
    for reg in ("dma.SRC_LO", "dma.SRC_HI", "dma.DST_LO", "dma.DST_HI"):
        device.write_reg(reg, 0)
    for reg, value in setup.items():
        device.write_reg(reg, value)
    device.write_fields("dma.CTRL", START=1)
    pending = device.wait_irq(device.irq_mask("DMA_DONE", "DMA_ERROR"), 10**9)
    assert pending == device.irq_mask("DMA_ERROR")
    assert device.read_field("dma.STATUS", "ERROR") == 1
    err = device.last_error()
    assert err["code"] == code and err["source"] == 1
    with pytest.raises(drivers.DeviceError) as info:
        dma_copy(device, 0, 0, 0)
    assert info.value.code == ErrCode.DMA_LENGTH or err["overflow"] is False


def test_dma_start_while_busy_is_refused(device):
    b = device.batch()
    for reg, value in (("dma.SRC_LO", 0), ("dma.DST_LO", 1 << 24), ("dma.LEN", 1 << 24)):
        b.write(reg, value)
    b.execute()
    device.write_fields("dma.CTRL", START=1)
    device.write_fields("dma.CTRL", START=1)       # still busy: refused, first copy continues
    assert device.last_error()["code"] == ErrCode.DMA_BUSY
    device.wait_irq(device.irq_mask("DMA_DONE"), 10**10)
    assert device.read_reg("dma.BYTES") == 1 << 24


def test_wait_irq_timeout_runs_exactly_the_timeout(device):
    t0 = device.now_ps
    with pytest.raises(drivers.DeviceTimeout, match="mask 0x1"):
        device.wait_irq(device.irq_mask("DMA_DONE"), 5000 * NS)
    assert device.now_ps - t0 == 5000 * NS


def test_software_interrupt_mask_and_ack(device):
    sw = device.irq_mask("SW")
    device.write_reg("irq.INT_MASK", sw)
    device.write_reg("irq.INT_SET", sw)
    assert device.read_reg("irq.INT_STATUS") == sw          # latched ...
    with pytest.raises(drivers.DeviceTimeout):               # ... but masked off the line
        device.wait_irq(sw, 100 * NS)
    device.write_reg("irq.INT_MASK", 0)
    assert device.wait_irq(sw, 100 * NS) == sw
    device.ack_irq(sw)
    assert device.read_reg("irq.INT_STATUS") == 0


def test_timestamp_counts_simulated_nanoseconds(device):
    ns = device.read_reg("id.TIMESTAMP_LO") | device.read_reg("id.TIMESTAMP_HI") << 32
    assert ns == (device.now_ps - LINK) // NS


def test_soft_reset_keeps_memory_power_on_reset_clears_it(device):
    device.write_mem(CFG.hbm.base, np.full(64, 7, np.uint8))
    device.write_reg("id.SCRATCH", 99)
    device.write_fields("rst.RESET_CTRL", SOFT_RESET=1)
    assert device.read_reg("id.SCRATCH") == 0
    assert device.read_mem(CFG.hbm.base, 64).tolist() == [7] * 64
    device.write_reg("id.SCRATCH", 99)
    t0 = device.now_ps
    device.reset()
    assert device.now_ps >= t0                                # time keeps running
    assert device.read_reg("id.SCRATCH") == 0
    assert not device.read_mem(CFG.hbm.base, 64).any()
    assert device.read_reg("id.HBM_SIZE_HI") == CFG.hbm.size >> 32


def test_read_into_a_reused_buffer(device):
    data = np.arange(3 * MiB, dtype=np.uint8)
    device.write_mem(CFG.hbm.base, data)
    buf = np.zeros(len(data), np.uint8)
    got = device.read_mem(CFG.hbm.base, len(data), out=buf)
    assert got is buf and np.array_equal(buf, data)
    with pytest.raises(drivers.RequestError, match="read buffer"):
        device.read_mem(CFG.hbm.base, 16, out=np.zeros(8, np.uint8))
    with pytest.raises(drivers.RequestError, match="read buffer"):
        device.read_mem(CFG.hbm.base, 16, out=np.zeros(4, np.uint32))


def test_stats_count_what_the_board_did(device):
    before = device.stats()
    nbytes = 1 * MiB
    device.write_mem(CFG.hbm.base, np.ones(nbytes, np.uint8))
    after = device.stats()
    assert after["units"]["hbm"]["bytes_written"] - before["units"]["hbm"]["bytes_written"] == nbytes
    assert after["elapsed_ps"] > before["elapsed_ps"] and after["now_ps"] == device.now_ps
    e = after["energy_pj"]
    assert e["total"] == pytest.approx(sum(v for k, v in e.items() if k != "total"))
    assert e["hbm"] == pytest.approx(
        (after["units"]["hbm"]["bytes_read"] + after["units"]["hbm"]["bytes_written"])
        * CFG.energy.hbm_pj_per_byte)


def test_perf_registers_read_the_same_counters_as_the_stats_call(device):
    device.write_mem(CFG.hbm.base, np.ones(3 * MiB + 5, np.uint8))
    via_regs = device.read_perf_counter("hbm", "bytes_written")
    assert via_regs == device.stats()["units"]["hbm"]["bytes_written"] >= 3 * MiB + 5
    assert device.read_perf_counter("board", "ca_cores") == CFG.cores.ca.count
    with pytest.raises(KeyError, match="no counter 'bytes_writ'"):
        device.read_perf_counter("hbm", "bytes_writ")
