"""The gRPC board server: a thin adapter from the ``npuvp.v1.Board`` service to a
:class:`vp.host_port.HostPort`.

All device logic lives behind ``HostPort``; this module only converts messages, serialises
access and maps errors:

* Every call into the board runs on ONE simulation thread (:class:`SimThread`), in arrival
  order: MyHDL allows one simulation per process and the board must see host requests one at a
  time. The gRPC worker pool that accepts connections may be larger.
* ``GuestError`` (the board refused an access the way hardware does) becomes
  ``FAILED_PRECONDITION`` with the error register contents in trailing metadata
  (``vp.proto.wire.ERR_*_KEY``); ``RequestError`` and malformed messages become
  ``INVALID_ARGUMENT``; any other exception is a model bug: logged with its traceback and
  answered ``INTERNAL``, and the server keeps serving.
* Server reflection and the standard health service (``grpc.health.v1``) are on, so generic
  tools (grpcurl, grpc_health_probe) work.

Entry points: :func:`start_server` (embed a server around an open ``HostPort``) and
:func:`serve` (what ``npuvp serve`` runs: build the board, serve until SIGINT/SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vp.proto import npuvp_pb2 as pb
from vp.proto import npuvp_pb2_grpc as pb_grpc
from vp.proto.wire import (CHANNEL_OPTIONS, ERR_ADDRESS_KEY, ERR_CODE_KEY, ERR_SYNDROME_KEY,
                           SERVICE_NAME, WriteMemMessage, decode_write_mem,
                           encode_read_mem_chunk, stats_to_proto)
from vp.shm_window import ShmWindows
from vp.spec.errors import GuestError, RequestError
from vp.spec.host import MEM_CHUNK_BYTES, DeviceInfo, RegOp

if TYPE_CHECKING:  # the board is only needed at run time, by serve()
    from vp.host_port import HostPort

__all__ = ["SimThread", "BoardServicer", "start_server", "serve", "serve_command",
           "server_subprocess", "stop_process"]

log = logging.getLogger("npuvp.server")

#: Threads accepting RPCs. Board work is serialised on the simulation thread regardless; extra
#: workers let health checks, reflection and streaming I/O proceed while the board is busy.
GRPC_WORKERS = 8


class SimThread:
    """One thread that runs every call into the board, in arrival order.

    A daemon thread (not a ``ThreadPoolExecutor``) so that a board stuck in a model bug cannot
    keep the process from exiting.
    """

    def __init__(self, name: str = "npuvp-sim"):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the simulation thread; return its result or raise its error."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: futures.Future = futures.Future()
        self._queue.put((future, fn, args))
        return future.result()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish queued calls, then end the thread (waits at most ``timeout_s``)."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, which classifies it
                future.set_exception(exc)


class _StreamBroken(Exception):
    """The client's request stream failed (cancelled, deadline, connection lost)."""


class BoardServicer(pb_grpc.BoardServicer):
    """Implements ``npuvp.v1.Board`` on a :class:`HostPort` through a :class:`SimThread`."""

    def __init__(self, port: "HostPort", sim: SimThread):
        self._port = port
        self._sim = sim
        self.shm = ShmWindows()

    # -- one helper runs a board call and maps its errors -----------------------------------

    def _run(self, context: grpc.ServicerContext, method: str, fn: Callable[..., Any],
             *args: Any) -> Any:
        try:
            return self._sim.call(fn, *args)
        except GuestError as exc:
            context.set_trailing_metadata(((ERR_CODE_KEY, str(exc.code)),
                                           (ERR_ADDRESS_KEY, str(exc.address)),
                                           (ERR_SYNDROME_KEY, str(exc.syndrome))))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, exc.message)
        except RequestError as exc:
            # The board's own words, so every transport reports the same message.
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except _StreamBroken as exc:
            context.abort(grpc.StatusCode.CANCELLED, f"{method}: request stream ended: {exc}")
        except Exception as exc:
            # A model bug: say so loudly, keep serving. The board state may be inconsistent
            # but the process and the other clients are not lost.
            log.error("npuvp: INTERNAL ERROR (model bug) in %s: %s: %s", method,
                      type(exc).__name__, exc, exc_info=True)
            context.abort(grpc.StatusCode.INTERNAL,
                          f"{method}: internal error in the board model: "
                          f"{type(exc).__name__}: {exc} (traceback in the server log)")

    @staticmethod
    def _refuse(context: grpc.ServicerContext, method: str, problem: str) -> None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: {problem}")

    # -- the service ------------------------------------------------------------------------

    def GetInfo(self, request: pb.GetInfoRequest, context) -> pb.DeviceInfo:
        info: DeviceInfo = self._run(context, "GetInfo", self._port.info)
        major, minor, patch = info.version
        return pb.DeviceInfo(
            board_name=info.board_name, device_id=info.device_id, version_major=major,
            version_minor=minor, version_patch=patch, features=info.features,
            bar_size=info.bar_size, hbm_base=info.hbm_base, hbm_size=info.hbm_size,
            link_latency_ps=info.link_latency_ps, link_bytes_per_s=info.link_bytes_per_s,
            now_ps=info.now_ps, extra=info.extra)

    def RegBatch(self, request: pb.RegBatchRequest, context) -> pb.RegBatchReply:
        n = len(request.write)
        if len(request.address) != n or len(request.value) != n:
            self._refuse(context, "RegBatch",
                         f"the packed arrays must have one entry per op, got write[{n}], "
                         f"address[{len(request.address)}], value[{len(request.value)}]")
        ops = list(map(RegOp, request.write, request.address, request.value))
        reply = self._run(context, "RegBatch", self._port.reg_batch, ops)
        return pb.RegBatchReply(status=[r.status for r in reply.results],
                                value=[r.value for r in reply.results], now_ps=reply.now_ps)

    def WriteMem(self, request_iterator: Iterator[WriteMemMessage], context
                 ) -> pb.WriteMemReply:
        # Requests arrive decoded by wire.decode_write_mem: the chunk is a view into the
        # received buffer, not a copy. The stream is consumed on the simulation thread, chunk
        # by chunk, so a 1 GiB write is never buffered whole and the board sees one request.
        def messages() -> Iterator[WriteMemMessage]:
            try:
                yield from request_iterator
            except grpc.RpcError as exc:
                raise _StreamBroken(str(exc) or "client cancelled") from None

        def chunks(stream: Iterator[WriteMemMessage], first: WriteMemMessage
                   ) -> Iterator[memoryview]:
            # HostPort checks that the chunks add up to total_bytes.
            yield first.data
            for msg in stream:
                if msg.address is not None or msg.total_bytes is not None:
                    raise RequestError("WriteMem: only the first message may carry address "
                                       "and total_bytes")
                yield msg.data

        def write() -> int:
            stream = messages()
            first = next(stream, None)
            if first is None:
                raise RequestError("WriteMem: empty request stream (the first message must "
                                   "carry address and total_bytes)")
            if first.address is None or first.total_bytes is None:
                raise RequestError("WriteMem: the first message must carry both address and "
                                   "total_bytes")
            return self._port.write_mem(first.address, first.total_bytes, chunks(stream, first))

        return pb.WriteMemReply(now_ps=self._run(context, "WriteMem", write))

    def ReadMem(self, request: pb.ReadMemRequest, context) -> Iterator[bytes]:
        # Yields ReadMemChunk messages already encoded by wire.encode_read_mem_chunk (one copy
        # of the data instead of the protobuf runtime's three).
        # The board checks the request and charges its time at once, then hands out chunks
        # read on the simulation thread one at a time, so reading overlaps sending.
        now_ps, chunks = self._run(context, "ReadMem", self._port.read_mem_chunks,
                                   request.address, request.nbytes, MEM_CHUNK_BYTES)
        sent = 0
        while (chunk := self._run(context, "ReadMem", next, chunks, None)) is not None:
            sent += len(chunk)
            yield encode_read_mem_chunk(chunk, now_ps)   # copies: the buffer is reused
        if sent != request.nbytes:
            log.error("npuvp: INTERNAL ERROR (model bug) in ReadMem: asked %d bytes, "
                      "board returned %d", request.nbytes, sent)
            context.abort(grpc.StatusCode.INTERNAL, "ReadMem: board returned the wrong length")

    def WaitIrq(self, request: pb.WaitIrqRequest, context) -> pb.WaitIrqReply:
        pending, now_ps = self._run(context, "WaitIrq", self._port.wait_irq, request.mask,
                                    request.timeout_ps)
        return pb.WaitIrqReply(pending=pending, now_ps=now_ps)

    def GetStats(self, request: pb.GetStatsRequest, context) -> pb.Stats:
        stats = self._run(context, "GetStats", self._port.stats)
        return stats_to_proto(stats, stats["now_ps"])

    def AttachShm(self, request: pb.ShmSegment, context) -> pb.AttachShmReply:
        self._run(context, "AttachShm", self.shm.attach, request.name, request.bytes)
        return pb.AttachShmReply()

    def DetachShm(self, request: pb.ShmSegment, context) -> pb.AttachShmReply:
        self.shm.detach(request.name)
        return pb.AttachShmReply()

    def WriteShm(self, request: pb.ShmTransfer, context) -> pb.WriteMemReply:
        def write() -> int:
            data = self.shm.view(request.name, request.nbytes)
            return self._port.write_mem(request.address, request.nbytes, (data,))
        return pb.WriteMemReply(now_ps=self._run(context, "WriteShm", write))

    def ReadShm(self, request: pb.ShmTransfer, context) -> pb.ReadShmReply:
        def read() -> int:
            out = self.shm.view(request.name, request.nbytes)
            return self._port.read_mem(request.address, request.nbytes, out)[1]
        return pb.ReadShmReply(now_ps=self._run(context, "ReadShm", read))

    def Reset(self, request: pb.ResetRequest, context) -> pb.ResetReply:
        return pb.ResetReply(now_ps=self._run(context, "Reset", self._port.reset))


def _board_handlers(servicer: BoardServicer) -> grpc.GenericRpcHandler:
    """The service's method handlers, like the generated ``add_BoardServicer_to_server`` but
    with the zero-copy codecs for the bulk messages (same wire format)."""
    make = {(False, False): grpc.unary_unary_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler}
    custom_decode = {"WriteMem": decode_write_mem}
    pre_encoded = {"ReadMem"}            # the handler yields encoded bytes
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Board"].methods:
        request_cls = getattr(pb, method.input_type.name)
        reply_cls = getattr(pb, method.output_type.name)
        handlers[method.name] = make[method.client_streaming, method.server_streaming](
            getattr(servicer, method.name),
            request_deserializer=custom_decode.get(method.name, request_cls.FromString),
            response_serializer=None if method.name in pre_encoded
            else reply_cls.SerializeToString)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):      # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"


def start_server(port: "HostPort", host: str = "127.0.0.1", port_number: int = 0, *,
                 sim: SimThread | None = None) -> tuple[grpc.Server, int]:
    """Serve ``port`` (an open HostPort) on ``host:port_number`` (0 = any free port).

    Returns the started server and the bound port number. ``sim`` is the simulation thread
    that owns the board (a new one if ``None``; pass the thread the board was opened on). The
    server's health servicer is available as ``server.npuvp_health``; stop with
    ``server.stop(grace)``. Raises ``OSError`` if the address cannot be bound.
    """
    sim = sim or SimThread()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=GRPC_WORKERS,
                                                    thread_name_prefix="npuvp-grpc"),
                         # no SO_REUSEPORT: a second board on a busy port must fail,
                         # not silently share the port with the first
                         options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_board_handlers(BoardServicer(port, sim)),))

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    address = _address(host, port_number)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:                       # grpc >= 1.59 raises
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if not bound:                                     # older grpc returns 0
        raise OSError(f"cannot listen on {address}")
    server.start()
    server.npuvp_health = health_servicer
    return server, bound


def _keep_freed_memory() -> None:
    """Ask glibc's allocator to keep freed buffers instead of handing them back to the OS.

    Every streamed chunk passes through a few multi-megabyte temporaries (received bytes, gRPC
    slices, encoded replies). By default glibc returns such blocks to the OS on free, so each
    chunk page-faults fresh memory; on a VM that is most of the cost of a bulk transfer (bulk
    writes measured ~1.2 -> ~1.6 GB/s). The server is a process of its own, so tuning its
    allocator affects nothing else. No-op where glibc is absent.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3                  # glibc <malloc.h>
        libc.mallopt(m_mmap_threshold, 32 << 20)   # blocks up to 32 MiB come from the heap
        libc.mallopt(m_trim_threshold, 512 << 20)  # ... and up to 512 MiB of it stays mapped
    except (OSError, AttributeError):
        pass


def _write_port_file(path: str | os.PathLike, port: int) -> None:
    """Write ``port`` to ``path`` atomically: readers see no file or the whole number."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def serve(board_path: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 0,
          port_file: str | os.PathLike | None = None) -> int:
    """Build the board from ``board_path`` (None = default board) and serve it until SIGINT or
    SIGTERM. Prints ``npuvp board '<name>' serving on HOST:PORT`` once ready and writes the bound
    port to ``port_file`` (atomically) if given. Returns the process exit status: 0 after a
    clean shutdown, 1 if the address cannot be bound, 2 if the board cannot be built."""
    from vp.host_port import HostPort          # device side, only needed to actually serve
    from vp.spec.board_config import BoardConfigError

    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    _keep_freed_memory()
    sim = SimThread()
    try:
        board = sim.call(HostPort.open, None if board_path is None else os.fspath(board_path))
    except (BoardConfigError, OSError) as exc:
        print(f"npuvp: cannot build the board: {exc}", file=sys.stderr, flush=True)
        sim.stop()
        return 2

    stop = threading.Event()
    try:
        try:
            server, bound = start_server(board, host, port, sim=sim)
        except OSError as exc:
            print(f"npuvp: {exc}", file=sys.stderr, flush=True)
            return 1
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
        try:
            name = sim.call(board.info).board_name
            if port_file is not None:
                _write_port_file(port_file, bound)
            print(f"npuvp board '{name}' serving on {_address(host, bound)}", flush=True)
            while not stop.wait(0.5):
                pass
            log.info("npuvp: shutting down")
        finally:
            server.npuvp_health.enter_graceful_shutdown()
            server.stop(grace=2.0).wait()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        try:
            sim.call(board.close)
        finally:
            sim.stop()
    return 0


# --------------------------------------------------------------------------------------------
# Running a server in a child process (tests, benchmarks, notebooks).
# --------------------------------------------------------------------------------------------

#: Directory that holds the ``vp`` package; put on the child's PYTHONPATH so that a source
#: checkout works without installation.
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def serve_command(port_file: str | os.PathLike,
                  board_path: str | os.PathLike | None = None) -> list[str]:
    """The command line of ``npuvp serve`` on a free loopback port, writing the port to
    ``port_file``; ``board_path`` None serves the default board."""
    cmd = [sys.executable, "-m", "vp.cli", "serve", "--port", "0", "--port-file",
           os.fspath(port_file)]
    if board_path is not None:
        cmd += ["--board", os.fspath(board_path)]
    return cmd


def child_env() -> dict[str, str]:
    """The environment for a child that must import this source tree."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{_SOURCE_ROOT}{os.pathsep}{path}" if path else str(_SOURCE_ROOT)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@contextlib.contextmanager
def server_subprocess(board_path: str | os.PathLike | None = None, *,
                      timeout_s: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``npuvp serve`` in a child process on loopback; yield ``("127.0.0.1:PORT", proc)``.

    Waits until the child has written its port (at most ``timeout_s`` seconds) and always stops
    it on exit (SIGTERM, then SIGKILL). If the child dies or does not come up, raises
    ``RuntimeError``/``TimeoutError`` carrying the end of its output.
    """
    with tempfile.TemporaryDirectory(prefix="npuvp-server-") as tmp:
        port_file, log_path = Path(tmp) / "port", Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(serve_command(port_file, board_path), env=child_env(),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            try:
                deadline = time.monotonic() + timeout_s
                while not port_file.exists():       # written atomically: present = complete
                    if proc.poll() is not None:
                        raise RuntimeError(f"npuvp server exited with status {proc.returncode} "
                                           f"before serving:\n{_tail(log_path)}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"npuvp server did not start within {timeout_s:g} s:"
                                           f"\n{_tail(log_path)}")
                    time.sleep(0.02)
                yield f"127.0.0.1:{int(port_file.read_text())}", proc
            finally:
                stop_process(proc)


def _tail(path: Path, limit: int = 4000) -> str:
    return path.read_text(errors="replace")[-limit:]


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM ``proc``, wait up to ``grace_s`` seconds, then SIGKILL; never leaves it running."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
