"""The gRPC transport: reaches a board served by ``npuvp serve`` (``vp.server``).

A thin adapter: it converts the plain requests of :mod:`vp.spec.host` to ``npuvp.v1.Board``
messages and back, and maps gRPC statuses to the errors every transport raises:

* ``FAILED_PRECONDITION`` with ``npuvp-err-*`` trailing metadata -> ``GuestError``;
* ``INVALID_ARGUMENT`` -> ``RequestError``;
* anything else (server gone, deadline, internal model error) -> ``TransportError``.

Bulk memory moves as a stream of ``MEM_CHUNK_BYTES`` chunks; a read lands in one preallocated
numpy array. When the board is on this machine (a loopback address), requests of at least
``SHM_MIN_BYTES`` move through a POSIX shared-memory segment the transport creates and the
server maps (DESIGN.md §5): one copy on each side and a small RPC, with the same simulated time
as streaming. If the server cannot map it the transport streams.

Host side: imports only ``vp.spec``, ``vp.proto`` and the driver's own modules.
"""

from __future__ import annotations

import threading
from multiprocessing import shared_memory
from typing import Any, Callable, Iterator, Sequence

import grpc
import numpy as np

from drivers.transport import Transport, TransportError
from vp.proto import npuvp_pb2 as pb
from vp.proto import npuvp_pb2_grpc as pb_grpc
from vp.proto.wire import (CHANNEL_OPTIONS, ERR_ADDRESS_KEY, ERR_CODE_KEY, ERR_SYNDROME_KEY,
                           SERVICE_NAME, decode_read_mem_chunk, encode_write_mem,
                           stats_from_proto)
from vp.spec.errors import GuestError, RequestError
from vp.spec.host import (MEM_CHUNK_BYTES, DeviceInfo, RegBatchReply, RegOp, RegResult,
                          check_out_buffer)

__all__ = ["GrpcTransport", "SHM_MIN_BYTES"]

#: Smallest memory request worth the shared-memory window (bytes).
SHM_MIN_BYTES = 1 << 20
#: Size of the first window; it grows to the largest request seen (bytes).
SHM_FIRST_BYTES = 64 << 20


def is_loopback(target: str) -> bool:
    """True when ``target`` ("host:port") names this machine by a loopback address."""
    host = target.rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


class GrpcTransport(Transport):
    """A board reached over gRPC at ``target`` (``"host:port"``).

    Args:
        target: address of a running ``npuvp serve``.
        timeout_s: how long to wait for the connection at construction (seconds). A refused
            connection fails at once; this bounds one that neither succeeds nor fails.
        call_timeout_s: deadline of each call in wall-clock seconds; ``None`` (default) waits
            as long as the board takes (an interrupt wait may simulate a long stretch).

    Raises:
        TransportError: no board answers at ``target`` within ``timeout_s``.
    """

    def __init__(self, target: str, timeout_s: float = 30, *,
                 call_timeout_s: float | None = None, shm: bool | None = None):
        self.target = target
        self._timeout = call_timeout_s
        self._closed = False
        #: Use the shared-memory window (None: when the target is a loopback address).
        self.shm_enabled = is_loopback(target) if shm is None else shm
        self._shm: shared_memory.SharedMemory | None = None
        self._channel = grpc.insecure_channel(target, options=list(CHANNEL_OPTIONS))
        problem = _connect(self._channel, timeout_s)
        if problem:
            self._channel.close()
            raise TransportError(f"cannot connect to an npuvp board at {target!r}: {problem} "
                                 f"(is `npuvp serve` running there?)")
        self._stub = pb_grpc.BoardStub(self._channel)
        # The bulk calls use the zero-copy codecs of vp.proto.wire (same wire format): chunks
        # go out as encoded bytes and come back as views into the received buffer.
        self._write_mem = self._channel.stream_unary(
            f"/{SERVICE_NAME}/WriteMem", request_serializer=None,
            response_deserializer=pb.WriteMemReply.FromString)
        self._read_mem = self._channel.unary_stream(
            f"/{SERVICE_NAME}/ReadMem", request_serializer=pb.ReadMemRequest.SerializeToString,
            response_deserializer=decode_read_mem_chunk)

    # -- error mapping ------------------------------------------------------------------------

    def _error(self, method: str, exc: grpc.RpcError) -> Exception:
        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            meta = dict(exc.trailing_metadata() or ())
            try:
                return GuestError(int(meta[ERR_CODE_KEY]), int(meta[ERR_ADDRESS_KEY]),
                                  int(meta[ERR_SYNDROME_KEY]), details)
            except (KeyError, ValueError):
                pass    # not from an npuvp board: fall through to a link error
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return RequestError(details)
        name = code.name if code is not None else "UNKNOWN"
        return TransportError(f"{self.target}: {method} failed: {name}: {details}")

    def _call(self, method: str, rpc: Callable[..., Any], request: Any) -> Any:
        self._check_open()
        try:
            return rpc(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise self._error(method, exc) from None

    # -- Transport ---------------------------------------------------------------------------

    def info(self) -> DeviceInfo:
        m = self._call("GetInfo", self._stub.GetInfo, pb.GetInfoRequest())
        return DeviceInfo(
            board_name=m.board_name, device_id=m.device_id,
            version=(m.version_major, m.version_minor, m.version_patch), features=m.features,
            bar_size=m.bar_size, hbm_base=m.hbm_base, hbm_size=m.hbm_size,
            link_latency_ps=m.link_latency_ps, link_bytes_per_s=m.link_bytes_per_s,
            now_ps=m.now_ps, extra=dict(m.extra))

    def reg_batch(self, ops: Sequence[RegOp]) -> RegBatchReply:
        try:
            request = pb.RegBatchRequest(write=[op[0] for op in ops],
                                         address=[op[1] for op in ops],
                                         value=[op[2] if op[0] else 0 for op in ops])
        except (TypeError, ValueError) as exc:
            _refuse_ops(ops)       # names the first op that cannot be sent
            raise RequestError(f"register batch cannot be encoded: {exc}") from None
        m = self._call("RegBatch", self._stub.RegBatch, request)
        return RegBatchReply(results=list(map(RegResult, m.status, m.value)), now_ps=m.now_ps)

    def write_mem(self, address: int, data: np.ndarray) -> int:
        _check_uint("memory write", "address", address, 64)
        view = _byte_view(data)
        nbytes = len(view)
        seg = self._window(nbytes)
        if seg is not None:
            np.frombuffer(seg.buf, np.uint8, nbytes)[:] = view
            return self._call("WriteShm", self._stub.WriteShm,
                              pb.ShmTransfer(name=seg.name, address=address, nbytes=nbytes)).now_ps

        def requests() -> Iterator[bytes]:
            # Chunks are encoded lazily (one copy each), so at most a few are in flight.
            yield encode_write_mem(view[:MEM_CHUNK_BYTES], address=address, total_bytes=nbytes)
            for offset in range(MEM_CHUNK_BYTES, nbytes, MEM_CHUNK_BYTES):
                yield encode_write_mem(view[offset:offset + MEM_CHUNK_BYTES])

        return self._call("WriteMem", self._write_mem, requests()).now_ps

    def read_mem(self, address: int, nbytes: int,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        _check_uint("memory read", "address", address, 64)
        _check_uint("memory read", "length", nbytes, 64)
        self._check_open()
        out = check_out_buffer(out, nbytes)
        seg = self._window(nbytes)
        if seg is not None:
            now_ps = self._call("ReadShm", self._stub.ReadShm,
                                pb.ShmTransfer(name=seg.name, address=address,
                                               nbytes=nbytes)).now_ps
            out[:] = np.frombuffer(seg.buf, np.uint8, nbytes)
            return out, now_ps
        offset, now_ps = 0, 0
        try:
            for data, now_ps in self._read_mem(pb.ReadMemRequest(address=address,
                                                                 nbytes=nbytes),
                                               timeout=self._timeout):
                end = offset + len(data)
                if end > nbytes:
                    raise TransportError(f"{self.target}: ReadMem returned more than the "
                                         f"{nbytes} bytes asked")
                out[offset:end] = data          # the one copy: received buffer -> result
                offset = end
        except grpc.RpcError as exc:
            raise self._error("ReadMem", exc) from None
        if offset != nbytes:
            raise TransportError(f"{self.target}: ReadMem returned {offset} of {nbytes} bytes")
        return out, now_ps

    def wait_irq(self, mask: int, timeout_ps: int) -> tuple[int, int]:
        _check_uint("interrupt wait", "mask", mask, 64)
        _check_uint("interrupt wait", "timeout", timeout_ps, 64, unit=" ps")
        m = self._call("WaitIrq", self._stub.WaitIrq,
                       pb.WaitIrqRequest(mask=mask, timeout_ps=timeout_ps))
        return m.pending, m.now_ps

    def stats(self) -> dict:
        return stats_from_proto(self._call("GetStats", self._stub.GetStats, pb.GetStatsRequest()))

    def reset(self) -> int:
        return self._call("Reset", self._stub.Reset, pb.ResetRequest()).now_ps

    # -- shared-memory window -----------------------------------------------------------------
    def _window(self, nbytes: int) -> shared_memory.SharedMemory | None:
        """The segment for a request of ``nbytes`` (created or grown and attached on demand),
        or None to stream: a small request, a remote board, or a server that cannot map it."""
        if not self.shm_enabled or nbytes < SHM_MIN_BYTES:
            return None
        if self._shm is not None and self._shm.size >= nbytes:
            return self._shm
        self._release_window()
        try:
            seg = shared_memory.SharedMemory(create=True, size=max(nbytes, SHM_FIRST_BYTES))
        except OSError:
            self.shm_enabled = False
            return None
        try:
            self._call("AttachShm", self._stub.AttachShm,
                       pb.ShmSegment(name=seg.name, bytes=seg.size))
        except RequestError:          # the server is elsewhere or refuses: stream instead
            seg.close()
            seg.unlink()
            self.shm_enabled = False
            return None
        self._shm = seg
        return seg

    def _release_window(self) -> None:
        seg, self._shm = self._shm, None
        if seg is None:
            return
        try:
            self._stub.DetachShm(pb.ShmSegment(name=seg.name), timeout=5)
        except grpc.RpcError:         # the server is gone: nothing to detach
            pass
        seg.close()
        seg.unlink()

    def close(self) -> None:
        if not self._closed:
            self._release_window()
        self._closed = True
        self._channel.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"the link to {self.target} is closed")

    def __enter__(self) -> "GrpcTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GrpcTransport({self.target!r})"


def _connect(channel: grpc.Channel, timeout_s: float) -> str | None:
    """Connect ``channel``; ``None`` when ready, else why not. Unlike
    ``grpc.channel_ready_future``, which keeps retrying until its timeout, the first failed
    attempt (connection refused, unknown host) ends the wait."""
    settled = threading.Event()
    last: list[grpc.ChannelConnectivity] = []

    def watch(state: grpc.ChannelConnectivity) -> None:
        last.append(state)
        if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                     grpc.ChannelConnectivity.SHUTDOWN):
            settled.set()

    channel.subscribe(watch, try_to_connect=True)
    try:
        if not settled.wait(timeout_s):
            return f"no connection within {timeout_s:g} s"
    finally:
        channel.unsubscribe(watch)
    if last[-1] == grpc.ChannelConnectivity.READY:
        return None
    return "connection failed" if last[-1] != grpc.ChannelConnectivity.SHUTDOWN else "closed"


# Values the wire cannot carry are refused here, before sending, with the kind of message the
# board gives for values it refuses itself (everything in range is left to the board to judge).

def _is_uint(value: Any, bits: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and 0 <= int(value) < 1 << bits)


def _check_uint(what: str, name: str, value: Any, bits: int, unit: str = "") -> None:
    if not _is_uint(value, bits):
        raise RequestError(f"{what}: {name} {value!r}{unit} is not a {bits}-bit unsigned "
                           f"integer")


def _refuse_ops(ops: Sequence[RegOp]) -> None:
    for i, op in enumerate(ops):
        if not _is_uint(op[1], 64):
            raise RequestError(f"operation {i}: address {op[1]!r} is not a 64-bit unsigned "
                               f"integer")
        if op[0] and not _is_uint(op[2], 32):
            raise RequestError(f"operation {i}: value {op[2]!r} does not fit a 32-bit register")
        if not isinstance(op[0], (bool, np.bool_)):
            raise RequestError(f"operation {i}: write flag {op[0]!r} is not a bool")


def _byte_view(data: Any) -> np.ndarray:
    """The bytes of ``data`` (any contiguous-able array or bytes-like) as a flat uint8 array,
    without copying when it is already contiguous."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
