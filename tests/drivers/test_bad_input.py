"""Bad input over every transport: each gets a clear error, and the board keeps its state and
keeps serving afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import drivers
from vp.spec.board_config import load_board
from vp.spec.host import MAX_MEM_REQUEST_BYTES
from vp.spec.regmap import ErrCode

CFG = load_board(None)
MARK = np.arange(256, dtype=np.uint8)


@pytest.fixture
def dev(device):
    """A device holding known state that every bad request must leave intact."""
    device.write_reg("id.SCRATCH", 0x1234_5678)
    device.write_mem(CFG.hbm.base + 0x100, MARK)
    yield device
    assert device.read_reg("id.SCRATCH") == 0x1234_5678
    assert np.array_equal(device.read_mem(CFG.hbm.base + 0x100, 256), MARK)


def test_unaligned_register(dev):
    with pytest.raises(drivers.DeviceError, match="BAD_WIDTH") as info:
        dev.read_reg_at(REG := 0x0E)
    assert (info.value.code, info.value.address) == (ErrCode.BAD_WIDTH, REG)
    assert info.value.syndrome == 0x40          # read, 4 bytes
    record = dev.last_error()
    assert record["code"] == ErrCode.BAD_WIDTH and record["address"] == REG
    assert dev.read_reg("irq.INT_STATUS") & dev.irq_mask("GUEST_ERROR")


def test_register_outside_bar_or_in_a_hole(dev):
    for address in (0x0FF0, 0xFFFC, 1 << 40):
        with pytest.raises(drivers.DeviceError, match="BAD_ADDRESS") as info:
            dev.write_reg_at(address, 1)
        assert info.value.address == address and info.value.syndrome == 0x41


def test_unknown_register_name_suggests(dev):
    with pytest.raises(KeyError, match="SCRATCH"):
        dev.read_reg("id.SCRATC")


def test_write_to_read_only_register(dev):
    with pytest.raises(drivers.DeviceError, match="READ_ONLY") as info:
        dev.write_reg("id.ID", 0)
    assert info.value.register == "id.ID"
    assert dev.read_reg("id.ID") != 0


def test_error_record_overflow_and_clear(dev):
    for _ in range(2):
        with pytest.raises(drivers.DeviceError):
            dev.write_reg("id.VERSION", 0)
    err = dev.last_error()
    assert err["code"] == ErrCode.READ_ONLY and err["overflow"]
    assert dev.read_reg("err.ERR_COUNT") == 2 and dev.read_reg("err.ERR_COUNT") == 0
    dev.clear_error()
    assert dev.last_error() is None
    assert not dev.read_reg("irq.INT_STATUS") & dev.irq_mask("GUEST_ERROR")


def test_value_too_wide(dev):
    with pytest.raises(ValueError, match="32-bit"):
        dev.write_reg("id.SCRATCH", 1 << 32)


@pytest.mark.parametrize("address,nbytes", [(CFG.hbm.base + CFG.hbm.size - 8, 16),
                                            (CFG.hbm.base + CFG.hbm.size, 1),
                                            ((1 << 64) - 4, 4)])
def test_memory_beyond_hbm(dev, address, nbytes):
    with pytest.raises(drivers.DeviceError, match="MEM_RANGE") as info:
        dev.read_mem(address, nbytes)
    assert info.value.code == ErrCode.MEM_RANGE and info.value.address == address
    with pytest.raises(drivers.DeviceError, match="outside HBM"):
        dev.write_mem(address, np.zeros(nbytes, np.uint8))


def test_oversized_and_empty_memory_requests(dev):
    with pytest.raises(drivers.RequestError, match="limit"):
        dev.read_mem(CFG.hbm.base, MAX_MEM_REQUEST_BYTES + 1)
    with pytest.raises(drivers.RequestError, match="positive"):
        dev.read_mem(CFG.hbm.base, 0)


def test_bad_interrupt_wait(dev):
    with pytest.raises(drivers.RequestError, match="mask"):
        dev.wait_irq(0, 100)
    with pytest.raises(drivers.RequestError, match="timeout"):
        dev.wait_irq(1, -1)
