"""What the transports must share: the same answers and the same simulated times; and what
opening a device must refuse."""

from __future__ import annotations

import numpy as np
import pytest

import drivers
from drivers.example import dma_copy
from tests.helpers.board_server import running_server
from vp.spec.board_config import BoardConfigError
from vp.spec.host import DeviceInfo, RegBatchReply, RegResult
from vp.spec.regmap import REGMAP


def _session(dev: drivers.Device) -> list:
    """A fixed programming sequence; returns every value and timestamp it observed."""
    seen = [dev.now_ps]
    data = np.random.default_rng(7).integers(0, 256, 5 << 20, dtype=np.uint8)
    dev.write_mem(0x2000, data)
    seen.append(dev.now_ps)
    seen.append(dma_copy(dev, 0x2000, 0x100_0000, data.nbytes))
    seen.append(dev.now_ps)
    seen.append(bytes(dev.read_mem(0x100_0000, data.nbytes)) == data.tobytes())
    with pytest.raises(drivers.DeviceError) as info:
        dev.write_reg("id.FEATURES", 1)
    seen += [info.value.code, info.value.syndrome, dev.now_ps]
    seen.append(dev.read_reg("id.TIMESTAMP_LO"))
    with pytest.raises(drivers.DeviceTimeout):
        dev.wait_irq(dev.irq_mask("SW"), 12_345)
    seen += [dev.now_ps, dev.last_error()]
    return seen


def test_same_bytes_and_times_over_every_transport():
    with drivers.open_device("embedded://") as dev:
        embedded = _session(dev)
    with running_server() as address, drivers.open_device(f"grpc://{address}") as dev:
        grpc = _session(dev)
    assert embedded == grpc
    assert embedded[4] is True


@pytest.mark.parametrize("url,match", [("nope", "SCHEME://"), ("tcp://x:1", "unknown scheme"),
                                       ("grpc://localhost", "host:port"),
                                       ("grpc://h:99999", "port number")])
def test_unknown_device_url(url, match):
    with pytest.raises(drivers.UnknownDeviceUrl, match=match):
        drivers.open_device(url)


def test_grpc_nobody_listening():
    with pytest.raises(drivers.TransportError, match="127.0.0.1:9"):
        drivers.open_device("grpc://127.0.0.1:9")


def test_broken_board_yaml_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhbm:\n  size: 64 GB/s\n")
    with pytest.raises(BoardConfigError, match=r"bad.yaml: hbm.size: '64 GB/s'"):
        drivers.open_device(f"embedded://{bad}")
    with drivers.open_device("embedded://") as dev:   # nothing was left half-built
        assert dev.read_reg("id.SCRATCH") == 0


def test_custom_board_file(tmp_path):
    board = tmp_path / "small.yaml"
    board.write_text("name: small\nhbm:\n  size: 1 GiB\n  base: 0x1000_0000\n"
                     "host_link:\n  latency: 250 ns\n")
    with drivers.open_device(f"embedded://{board}") as dev:
        assert dev.info.board_name == "small" and dev.info.hbm_size == 1 << 30
        t0 = dev.now_ps
        dev.read_reg("id.SCRATCH")
        assert dev.now_ps - t0 == 250_000
        dev.write_mem(0x1000_0000, np.ones(8, np.uint8))
        with pytest.raises(drivers.DeviceError, match="MEM_RANGE"):
            dev.read_mem(0, 8)


def test_second_embedded_board_in_one_process_is_refused():
    with drivers.open_device("embedded://") as dev:
        with pytest.raises(drivers.TransportError, match="one simulation per process"):
            drivers.open_device("embedded://")
        assert dev.read_reg("id.ID")             # the first board is untouched
    with drivers.open_device("embedded://"):      # and once closed, another may open
        pass


class _ForeignBoard:
    """A transport to a board that answers id.ID / id.VERSION with other values: how a
    driver meets hardware it was not built for."""

    def __init__(self, device_id: int, version: int):
        self.answers = {REGMAP.reg("id.ID").address: device_id,
                        REGMAP.reg("id.VERSION").address: version}
        self.closed = False

    def info(self):
        return DeviceInfo("foreign", 0, (0, 0, 0), 0, 0, 0, 0, 0, 1, 0)

    def reg_batch(self, ops):
        return RegBatchReply([RegResult(0, self.answers.get(op.address, 0)) for op in ops], 0)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("device_id,version,match", [
    (0x1234_5678, 0x0001_0000, "not an npuvp board"),
    (REGMAP.reg("id.ID").reset, 0x0002_0000, r"version 2\.0 is incompatible"),
])
def test_incompatible_board_is_refused(device_id, version, match):
    board = _ForeignBoard(device_id, version)
    with pytest.raises(drivers.IncompatibleDeviceError, match=match):
        drivers.Device(board, "test://foreign")
    assert board.closed


def test_shared_memory_window_and_stream_agree():
    """On loopback, bulk memory goes through a shared-memory window; ?shm=0 streams. Same
    bytes, same simulated time per request."""
    data = np.random.default_rng(11).integers(0, 256, 3 << 20, dtype=np.uint8)
    with running_server() as address:
        with drivers.open_device(f"grpc://{address}") as fast, \
                drivers.open_device(f"grpc://{address}?shm=0") as streamed:
            took = {}
            for name, dev in (("shm", fast), ("stream", streamed)):
                dev.read_reg("id.ID")                  # learn the shared board's time
                t0 = dev.now_ps
                dev.write_mem(0x10_0000, data)
                t1 = dev.now_ps
                back = dev.read_mem(0x10_0000, len(data))
                took[name] = (t1 - t0, dev.now_ps - t1)
                assert np.array_equal(back, data)
            assert fast._transport._shm is not None and streamed._transport._shm is None
            assert took["shm"] == took["stream"]
            with pytest.raises(drivers.DeviceError, match="MEM_RANGE"):
                fast.write_mem(1 << 62, data)           # guest errors as on any path
            assert fast.read_reg("id.ID")


@pytest.mark.parametrize("url", ["grpc://127.0.0.1:5?shm=2", "grpc://127.0.0.1:5?fast=1"])
def test_bad_url_options(url):
    with pytest.raises(drivers.UnknownDeviceUrl, match="shm=0|1"):
        drivers.open_device(url)
