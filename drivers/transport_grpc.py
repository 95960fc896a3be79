"""The gRPC transport: reaches a board served by ``npuvp serve`` (``vp.server``).

A thin adapter: it converts the plain requests of :mod:`vp.spec.host` to ``npuvp.v1.Board``
messages and back, and maps gRPC statuses to the errors every transport raises:

* ``FAILED_PRECONDITION`` with ``npuvp-err-*`` trailing metadata -> ``GuestError``;
* ``INVALID_ARGUMENT`` -> ``RequestError``;
* anything else (server gone, deadline, internal model error) -> ``TransportError``.

Bulk memory moves as a stream of ``MEM_CHUNK_BYTES`` chunks; a read lands in one preallocated
numpy array.

Host side: imports only ``vp.spec``, ``vp.proto`` and the driver's own modules.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import grpc
import numpy as np

from drivers.transport import Transport, TransportError
from vp.proto import npuvp_pb2 as pb
from vp.proto import npuvp_pb2_grpc as pb_grpc
from vp.proto.wire import CHANNEL_OPTIONS, ERR_ADDRESS_KEY, ERR_CODE_KEY, ERR_SYNDROME_KEY
from vp.spec.errors import GuestError, RequestError
from vp.spec.host import MEM_CHUNK_BYTES, DeviceInfo, RegBatchReply, RegOp, RegResult

__all__ = ["GrpcTransport"]


class GrpcTransport(Transport):
    """A board reached over gRPC at ``target`` (``"host:port"``).

    Args:
        target: address of a running ``npuvp serve``.
        timeout_s: how long to wait for the connection at construction (seconds).
        call_timeout_s: deadline of each call in wall-clock seconds; ``None`` (default) waits
            as long as the board takes (an interrupt wait may simulate a long stretch).

    Raises:
        TransportError: no board answers at ``target`` within ``timeout_s``.
    """

    def __init__(self, target: str, timeout_s: float = 30, *,
                 call_timeout_s: float | None = None):
        self.target = target
        self._timeout = call_timeout_s
        self._channel = grpc.insecure_channel(target, options=list(CHANNEL_OPTIONS))
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise TransportError(f"cannot connect to an npuvp board at {target!r} within "
                                 f"{timeout_s:g} s (is `npuvp serve` running there?)") from None
        self._stub = pb_grpc.BoardStub(self._channel)

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
                                         value=[op[2] for op in ops])
        except (TypeError, ValueError) as exc:       # negative or over-wide address / value
            raise RequestError(f"RegBatch: cannot encode ops: {exc}") from None
        m = self._call("RegBatch", self._stub.RegBatch, request)
        return RegBatchReply(results=list(map(RegResult, m.status, m.value)), now_ps=m.now_ps)

    def write_mem(self, address: int, data: np.ndarray) -> int:
        view = _byte_view(data)
        nbytes = len(view)
        if address < 0:
            raise RequestError(f"WriteMem: negative address {address}")

        def requests() -> Iterator[pb.WriteMemRequest]:
            # Chunks are sliced lazily so at most a few are in flight; protobuf needs ``bytes``
            # for a bytes field, so each chunk is copied once here.
            yield pb.WriteMemRequest(address=address, total_bytes=nbytes,
                                     data=view[:MEM_CHUNK_BYTES].tobytes())
            for offset in range(MEM_CHUNK_BYTES, nbytes, MEM_CHUNK_BYTES):
                yield pb.WriteMemRequest(data=view[offset:offset + MEM_CHUNK_BYTES].tobytes())

        return self._call("WriteMem", self._stub.WriteMem, requests()).now_ps

    def read_mem(self, address: int, nbytes: int) -> tuple[np.ndarray, int]:
        if address < 0 or nbytes < 0:
            raise RequestError(f"ReadMem: negative address or size ({address}, {nbytes})")
        out = np.empty(nbytes, dtype=np.uint8)
        offset, now_ps = 0, 0
        try:
            for chunk in self._stub.ReadMem(pb.ReadMemRequest(address=address, nbytes=nbytes),
                                            timeout=self._timeout):
                data = chunk.data
                end = offset + len(data)
                if end > nbytes:
                    raise TransportError(f"{self.target}: ReadMem returned more than the "
                                         f"{nbytes} bytes asked")
                out[offset:end] = np.frombuffer(data, dtype=np.uint8)
                offset, now_ps = end, chunk.now_ps
        except grpc.RpcError as exc:
            raise self._error("ReadMem", exc) from None
        if offset != nbytes:
            raise TransportError(f"{self.target}: ReadMem returned {offset} of {nbytes} bytes")
        return out, now_ps

    def wait_irq(self, mask: int, timeout_ps: int) -> tuple[int, int]:
        m = self._call("WaitIrq", self._stub.WaitIrq,
                       pb.WaitIrqRequest(mask=mask, timeout_ps=timeout_ps))
        return m.pending, m.now_ps

    def reset(self) -> int:
        return self._call("Reset", self._stub.Reset, pb.ResetRequest()).now_ps

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GrpcTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GrpcTransport({self.target!r})"


def _byte_view(data: Any) -> np.ndarray:
    """The bytes of ``data`` (any contiguous-able array or bytes-like) as a flat uint8 array,
    without copying when it is already contiguous."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
