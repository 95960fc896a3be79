"""The gRPC board server (``vp.server``) as a generic gRPC client sees it: a real ``npuvp serve``
subprocess on loopback, reached with raw stubs and with ``GrpcTransport``.

Malformed requests get INVALID_ARGUMENT with a clear message, guest errors FAILED_PRECONDITION
with the error record in trailing metadata, model bugs INTERNAL; after each the server keeps
serving and the board keeps its state.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
    ProtoReflectionDescriptorDatabase

from drivers.transport_grpc import GrpcTransport
from tests.helpers.board_server import child_env, running_server, serve_command, stop_process
from vp.proto import npuvp_pb2 as pb
from vp.proto import npuvp_pb2_grpc as pb_grpc
from vp.proto.wire import CHANNEL_OPTIONS, ERR_ADDRESS_KEY, ERR_CODE_KEY, ERR_SYNDROME_KEY
from vp.spec.board_config import load_board
from vp.spec.errors import GuestError, RequestError
from vp.spec.host import MAX_BATCH_OPS, MAX_MEM_REQUEST_BYTES, MEM_CHUNK_BYTES, RegOp
from vp.spec.regmap import REGMAP, ErrCode
from vp.spec.transport import TransportError

CFG = load_board(None)
SCRATCH = REGMAP.reg("id.SCRATCH").address
HBM_END = CFG.hbm.base + CFG.hbm.size


@pytest.fixture(scope="module")
def address():
    with running_server() as addr:
        yield addr


@pytest.fixture(scope="module")
def channel(address):
    with grpc.insecure_channel(address, options=list(CHANNEL_OPTIONS)) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield ch


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.BoardStub(channel)


@pytest.fixture
def transport(address):
    with GrpcTransport(address) as t:
        yield t


def regs(stub, *ops) -> pb.RegBatchReply:
    return stub.RegBatch(pb.RegBatchRequest(write=[o[0] for o in ops],
                                            address=[o[1] for o in ops],
                                            value=[o[2] for o in ops]), timeout=30)


def assert_still_serving(stub, value: int) -> None:
    """The board answers and kept the SCRATCH value written before the bad request."""
    reply = regs(stub, (False, SCRATCH, 0))
    assert list(reply.status) == [0] and list(reply.value) == [value]


def refused(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, timeout=30)
        if hasattr(result, "__next__"):            # server streaming: errors come on reading
            list(result)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return info.value


@pytest.fixture
def marked(stub):
    """Put a known value in SCRATCH; check it survived the test."""
    value = 0x5EED_0000 | (time.monotonic_ns() & 0xFFFF)
    assert list(regs(stub, (True, SCRATCH, value)).status) == [0]
    yield value
    assert_still_serving(stub, value)


# --- generic gRPC tooling -----------------------------------------------------------------

def test_reflection_lists_the_board_service(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    assert "npuvp.v1.Board" in services
    assert "grpc.health.v1.Health" in services
    fd = db.FindFileContainingSymbol("npuvp.v1.Board")
    assert fd.package == "npuvp.v1"
    methods = {m.name for m in fd.service[0].method}
    assert methods == {"GetInfo", "RegBatch", "WriteMem", "ReadMem", "WaitIrq", "Reset", "GetStats",
                       "AttachShm", "DetachShm", "WriteShm", "ReadShm"}


@pytest.mark.parametrize("service", ["", "npuvp.v1.Board"])
def test_health_says_serving(channel, service):
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_get_info_describes_the_default_board(stub):
    info = stub.GetInfo(pb.GetInfoRequest(), timeout=30)
    assert info.board_name == CFG.name
    assert (info.hbm_base, info.hbm_size) == (CFG.hbm.base, CFG.hbm.size)
    assert info.link_latency_ps == CFG.host_link.latency_ps
    assert info.bar_size == REGMAP.size
    assert info.extra["board_file"] == CFG.source


# --- malformed requests -----------------------------------------------------------------------

def test_unequal_packed_arrays(stub, marked):
    error = refused(stub.RegBatch, pb.RegBatchRequest(write=[False, False], address=[SCRATCH],
                                                      value=[0, 0]))
    assert "one entry per op" in error.details()
    assert "write[2], address[1], value[2]" in error.details()


def test_too_many_ops(stub, marked):
    n = MAX_BATCH_OPS + 1
    error = refused(stub.RegBatch, pb.RegBatchRequest(write=[False] * n, address=[SCRATCH] * n,
                                                      value=[0] * n))
    assert str(n) in error.details() and str(MAX_BATCH_OPS) in error.details()


def test_write_mem_without_total_bytes(stub, marked):
    error = refused(stub.WriteMem, iter([pb.WriteMemRequest(address=CFG.hbm.base, data=b"ab")]))
    assert "first message must carry both address and total_bytes" in error.details()


def test_write_mem_empty_stream(stub, marked):
    error = refused(stub.WriteMem, iter([]))
    assert "empty request stream" in error.details()


def test_write_mem_header_only_in_first_message(stub, marked):
    error = refused(stub.WriteMem, iter([
        pb.WriteMemRequest(address=CFG.hbm.base, total_bytes=4, data=b"ab"),
        pb.WriteMemRequest(address=CFG.hbm.base + 2, data=b"cd")]))
    assert "only the first message may carry address" in error.details()


@pytest.mark.parametrize("chunks, word", [([b"ab"], "sent 2"), ([b"abc", b"de"], "sent more")])
def test_write_mem_chunks_must_add_up(stub, marked, chunks, word):
    messages = [pb.WriteMemRequest(address=CFG.hbm.base, total_bytes=4, data=chunks[0])]
    messages += [pb.WriteMemRequest(data=c) for c in chunks[1:]]
    error = refused(stub.WriteMem, iter(messages))
    assert "announced 4 bytes" in error.details() and word in error.details()


@pytest.mark.parametrize("nbytes, word", [(0, "positive"),
                                          (MAX_MEM_REQUEST_BYTES + 1, "limit")])
def test_read_mem_size_refused(stub, marked, nbytes, word):
    error = refused(stub.ReadMem, pb.ReadMemRequest(address=CFG.hbm.base, nbytes=nbytes))
    assert word in error.details() and str(nbytes) in error.details()


def test_write_mem_too_large_refused_before_the_data(stub, marked):
    error = refused(stub.WriteMem, iter([pb.WriteMemRequest(
        address=CFG.hbm.base, total_bytes=MAX_MEM_REQUEST_BYTES + 1, data=b"x")]))
    assert "limit" in error.details()


def test_wait_irq_zero_mask(stub, marked):
    error = refused(stub.WaitIrq, pb.WaitIrqRequest(mask=0, timeout_ps=1000))
    assert "mask" in error.details()


def test_transport_refuses_what_the_wire_cannot_carry(transport):
    with pytest.raises(RequestError, match="timeout"):
        transport.wait_irq(1, -1)
    with pytest.raises(RequestError, match="operation 1: address -4"):
        transport.reg_batch([RegOp(False, SCRATCH), RegOp(False, -4)])
    with pytest.raises(RequestError, match="operation 0: value 4294967296"):
        transport.reg_batch([RegOp(True, SCRATCH, 1 << 32)])
    with pytest.raises(RequestError, match="address -1"):
        transport.read_mem(-1, 4)


# --- guest errors -----------------------------------------------------------------------------

def test_guest_error_metadata_on_the_wire(stub, marked):
    address = HBM_END - 2
    with pytest.raises(grpc.RpcError) as info:
        stub.WriteMem(iter([pb.WriteMemRequest(address=address, total_bytes=4, data=b"abcd")]),
                      timeout=30)
    error = info.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    meta = dict(error.trailing_metadata())
    assert int(meta[ERR_CODE_KEY]) == ErrCode.MEM_RANGE
    assert int(meta[ERR_ADDRESS_KEY]) == address
    assert int(meta[ERR_SYNDROME_KEY]) == 1           # host write
    assert "MEM_RANGE" in error.details() and f"0x{address:x}" in error.details()


def test_guest_error_round_trips_through_the_transport(transport):
    transport.reset()                 # the error unit latches the first error: start clean
    with pytest.raises(GuestError) as info:
        transport.read_mem(HBM_END, 16)
    assert (info.value.code, info.value.address, info.value.syndrome) == \
        (ErrCode.MEM_RANGE, HBM_END, 0)
    assert "outside HBM" in str(info.value)
    # reported the way hardware reports it: the error record holds the same facts
    err = {name: transport.reg_batch([RegOp(False, REGMAP.reg(f"err.{name}").address)])
           .results[0].value for name in ("ERR_ADDR_LO", "ERR_ADDR_HI")}
    assert err["ERR_ADDR_LO"] | err["ERR_ADDR_HI"] << 32 == HBM_END


def test_register_errors_are_statuses_not_rpc_errors(stub, marked):
    reply = regs(stub, (False, SCRATCH, 0), (False, 0x0E, 0), (False, SCRATCH, 0))
    assert list(reply.status) == [0, ErrCode.BAD_WIDTH]      # stops at the failing op
    assert reply.value[0] == marked


# --- data and concurrency ---------------------------------------------------------------------

def test_bulk_round_trip_in_chunks(transport, stub):
    n = 2 * MEM_CHUNK_BYTES + 12345
    data = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8)
    t0 = transport.info().now_ps
    t1 = transport.write_mem(CFG.hbm.base + 4096, data)
    assert t1 > t0
    back, t2 = transport.read_mem(CFG.hbm.base + 4096, n)
    assert back.dtype == np.uint8 and np.array_equal(back, data) and t2 > t1
    chunks = list(stub.ReadMem(pb.ReadMemRequest(address=CFG.hbm.base + 4096, nbytes=n),
                               timeout=30))
    assert [len(c.data) for c in chunks] == [MEM_CHUNK_BYTES, MEM_CHUNK_BYTES, 12345]
    assert len({c.now_ps for c in chunks}) == 1
    assert b"".join(c.data for c in chunks) == data.tobytes()


def test_write_accepts_any_dtype(transport):
    words = np.arange(1000, dtype=np.float32).reshape(10, 100)[:, ::2]     # not contiguous
    transport.write_mem(CFG.hbm.base, words)
    back, _ = transport.read_mem(CFG.hbm.base, words.nbytes)
    assert np.array_equal(back.view(np.float32).reshape(10, 50), words)


def test_batches_are_atomic_across_clients(address):
    """Each batch runs whole on the one simulation thread: a client's write-then-read pair
    always reads its own value, however the clients interleave."""
    failures = []

    def client(tag: int):
        with GrpcTransport(address) as t:
            for i in range(100):
                value = tag << 16 | i
                reply = t.reg_batch([RegOp(True, SCRATCH, value), RegOp(False, SCRATCH)])
                if reply.results[1].value != value:
                    failures.append((tag, i, reply.results[1].value))

    threads = [threading.Thread(target=client, args=(tag,)) for tag in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures


# --- link failures and the process ------------------------------------------------------------

def test_cannot_connect_names_the_target_and_fails_fast():
    start = time.monotonic()
    with pytest.raises(TransportError, match="127.0.0.1:1") as info:
        GrpcTransport("127.0.0.1:1", timeout_s=30)
    assert "cannot connect" in str(info.value)
    assert time.monotonic() - start < 10         # refused: no waiting out the timeout


def test_calls_after_close_are_transport_errors(address):
    t = GrpcTransport(address)
    t.close()
    with pytest.raises(TransportError, match="closed"):
        t.info()
    with pytest.raises(TransportError, match="closed"):
        t.read_mem(CFG.hbm.base, 4)


def test_serve_prints_its_address_and_exits_cleanly_on_sigterm():
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(serve_command(port_file), env=child_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            port = int(port_file.read_text())
            assert line.strip() == f"npuvp board '{CFG.name}' serving on 127.0.0.1:{port}"
            with GrpcTransport(f"127.0.0.1:{port}") as t:
                assert t.info().board_name == CFG.name
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0
                with pytest.raises(TransportError, match="UNAVAILABLE"):
                    t.info()
        finally:
            stop_process(proc)


def test_serve_refuses_a_bad_board_file(tmp_path):
    board = tmp_path / "bad.yaml"
    board.write_text("name: bad\nhbm: {size: 64 GB/s}\n")
    result = subprocess.run(serve_command(tmp_path / "port", board), env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "hbm.size: '64 GB/s'" in result.stderr and str(board) in result.stderr
    assert not (tmp_path / "port").exists()


def test_serve_refuses_a_port_in_use(address):
    port = address.rsplit(":", 1)[1]
    cmd = serve_command("unused")[:4] + ["--port", port]          # python -m vp.cli serve
    result = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_model_bug_is_internal_and_the_server_keeps_serving(caplog):
    """A real board with one fault injected: the exception is logged with its traceback,
    the client gets INTERNAL, and the next request is served. (In-process: the subprocess
    server has no way to inject a fault.)"""
    from vp.host_port import HostPort
    from vp.server import SimThread, start_server

    sim = SimThread()
    port = sim.call(HostPort.open, None)
    server = None
    try:
        def broken_reset():
            raise ZeroDivisionError("injected model bug")

        port.reset = broken_reset
        server, number = start_server(port, sim=sim)
        with GrpcTransport(f"127.0.0.1:{number}") as t:
            with pytest.raises(TransportError, match="INTERNAL.*ZeroDivisionError"):
                t.reset()
            assert t.reg_batch([RegOp(True, SCRATCH, 7), RegOp(False, SCRATCH)]) \
                .results[1].value == 7
        bug = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(bug) == 1 and "model bug" in bug[0].getMessage() and bug[0].exc_info
        assert "broken_reset" in caplog.text             # the traceback is logged
    finally:
        if server is not None:
            server.stop(None).wait()
        sim.call(port.close)
        sim.stop()


# --- shared-memory window ---------------------------------------------------------------------

def test_shared_memory_requests_that_cannot_be_served(stub, marked):
    from multiprocessing import shared_memory
    error = refused(stub.AttachShm, pb.ShmSegment(name="npuvp-no-such-segment", bytes=4096))
    assert "cannot attach shared memory" in error.details()
    error = refused(stub.WriteShm, pb.ShmTransfer(name="npuvp-never-attached", address=0,
                                                  nbytes=64))
    assert "not attached" in error.details()
    seg = shared_memory.SharedMemory(create=True, size=1 << 16)
    try:
        error = refused(stub.AttachShm, pb.ShmSegment(name=seg.name, bytes=1 << 20))
        assert "holds" in error.details()
        stub.AttachShm(pb.ShmSegment(name=seg.name, bytes=seg.size), timeout=30)
        error = refused(stub.ReadShm, pb.ShmTransfer(name=seg.name, address=0, nbytes=1 << 20))
        assert "exceeds shared memory" in error.details()
        seg.buf[:4] = b"\x01\x02\x03\x04"
        stub.WriteShm(pb.ShmTransfer(name=seg.name, address=0x40, nbytes=4), timeout=30)
        seg.buf[:4] = b"\x00\x00\x00\x00"
        stub.ReadShm(pb.ShmTransfer(name=seg.name, address=0x40, nbytes=4), timeout=30)
        assert bytes(seg.buf[:4]) == b"\x01\x02\x03\x04"
        stub.DetachShm(pb.ShmSegment(name=seg.name), timeout=30)
    finally:
        seg.close()
        seg.unlink()
