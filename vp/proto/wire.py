"""Facts about the gRPC link that both ends need: service name, error metadata keys, message
size limits, and the zero-copy codecs of the two bulk messages. The server (``vp.server``) and
the client transport (``drivers.transport_grpc``) both import them from here, so they are
written once.

Like the rest of ``vp.proto`` this module depends on nothing but the standard library.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from vp.proto import npuvp_pb2 as pb

#: Full name of the board service (``package.Service`` in ``npuvp.proto``).
SERVICE_NAME = "npuvp.v1.Board"

#: Trailing-metadata keys of a guest error (values are decimal strings); the status is
#: FAILED_PRECONDITION and the details carry the error's message.
ERR_CODE_KEY = "npuvp-err-code"
ERR_ADDRESS_KEY = "npuvp-err-address"
ERR_SYNDROME_KEY = "npuvp-err-syndrome"

#: Largest gRPC message either end accepts (bytes). Bulk memory moves in chunks of
#: ``vp.spec.host.MEM_CHUNK_BYTES`` (4 MiB); this leaves ample room above one chunk and for a
#: register batch of ``MAX_BATCH_OPS`` ops (~60 KiB).
MAX_MESSAGE_BYTES = 64 << 20

#: Channel/server options shared by both ends. Larger HTTP/2 frames (the default is 16 KiB)
#: and a larger initial stream window let a 4 MiB chunk move in a few frames without waiting
#: for window updates; on loopback this lifts bulk throughput by roughly a quarter.
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.http2.max_frame_size", (1 << 24) - 1),     # the HTTP/2 maximum
    ("grpc.http2.lookahead_bytes", 32 << 20),
)


# --------------------------------------------------------------------------------------------
# Zero-copy codecs for the two bulk messages.
#
# The protobuf runtime copies a ``bytes`` field into and out of its arena (and only accepts
# ``bytes``), which costs three or four extra copies of every chunk. These functions read and
# write the *same* protobuf wire format for ``WriteMemRequest`` and ``ReadMemChunk`` directly:
# encoding costs one copy (the join into the message), decoding none (the chunk is a
# memoryview into the received buffer). Other tools see ordinary protobuf messages.
# --------------------------------------------------------------------------------------------


_U64 = (1 << 64) - 1
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WriteMemMessage(NamedTuple):
    """A decoded ``WriteMemRequest``; ``None`` marks an absent optional field."""

    address: int | None
    total_bytes: int | None
    data: memoryview


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(raw) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field number, wire type, value)``; length-delimited values are memoryviews."""
    buf = memoryview(raw).cast("B")
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _read_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise ValueError("truncated length-delimited field")
            value, pos = buf[pos:pos + size], pos + size
        elif wire_type in (_I64, _I32):
            size = 8 if wire_type == _I64 else 4
            if pos + size > end:
                raise ValueError("truncated fixed-width field")
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if number == 0:
            raise ValueError("field number 0")
        yield number, wire_type, value


def _expect(number: int, wire_type: int, want: int, message: str) -> None:
    if wire_type != want:
        raise ValueError(f"{message} field {number} has wire type {wire_type}, expected {want}")


def encode_write_mem(data, address: int | None = None, total_bytes: int | None = None) -> bytes:
    """Wire bytes of ``WriteMemRequest(address=..., total_bytes=..., data=data)``;
    ``data`` is any contiguous bytes-like object (bytes, memoryview, uint8 array)."""
    view = memoryview(data).cast("B")
    parts = []
    if address is not None:
        parts += [b"\x08", _varint(address)]
    if total_bytes is not None:
        parts += [b"\x10", _varint(total_bytes)]
    if len(view):
        parts += [b"\x1a", _varint(len(view)), view]
    return b"".join(parts)


def decode_write_mem(raw: bytes) -> WriteMemMessage:
    """Parse ``WriteMemRequest`` wire bytes without copying the data chunk."""
    address = total = None
    data = memoryview(b"")
    for number, wire_type, value in _fields(raw):
        if number == 1:
            _expect(number, wire_type, _VARINT, "WriteMemRequest")
            address = value
        elif number == 2:
            _expect(number, wire_type, _VARINT, "WriteMemRequest")
            total = value
        elif number == 3:
            _expect(number, wire_type, _LEN, "WriteMemRequest")
            data = value
    return WriteMemMessage(address, total, data)


def encode_read_mem_chunk(data, now_ps: int) -> bytes:
    """Wire bytes of ``ReadMemChunk(data=data, now_ps=now_ps)``."""
    view = memoryview(data).cast("B")
    parts = [b"\x0a", _varint(len(view)), view] if len(view) else []
    if now_ps:
        parts += [b"\x10", _varint(now_ps)]
    return b"".join(parts)


def decode_read_mem_chunk(raw: bytes) -> tuple[memoryview, int]:
    """Parse ``ReadMemChunk`` wire bytes into ``(data view, now_ps)`` without copying."""
    data, now_ps = memoryview(b""), 0
    for number, wire_type, value in _fields(raw):
        if number == 1:
            _expect(number, wire_type, _LEN, "ReadMemChunk")
            data = value
        elif number == 2:
            _expect(number, wire_type, _VARINT, "ReadMemChunk")
            now_ps = value
    return data, now_ps


# -- statistics -------------------------------------------------------------------------------
def stats_to_proto(stats: dict, now_ps: int):
    """A board's stats dict (``models.stats.board_stats`` shape) as a ``Stats`` message."""
    msg = pb.Stats(now_ps=now_ps, elapsed_ps=stats["elapsed_ps"])
    for unit, counters in stats["units"].items():
        msg.units[unit].values.update({k: int(v) for k, v in counters.items()})
    for kind, summary in stats["kinds"].items():
        msg.kinds[kind].values.update({k: float(v) for k, v in summary.items()})
    msg.energy_pj.update({k: float(v) for k, v in stats["energy_pj"].items()})
    return msg


def stats_from_proto(msg) -> dict:
    """The stats dict back from a ``Stats`` message (kind summaries as floats)."""
    return {"now_ps": msg.now_ps, "elapsed_ps": msg.elapsed_ps,
            "units": {u: dict(c.values) for u, c in msg.units.items()},
            "kinds": {k: dict(s.values) for k, s in msg.kinds.items()},
            "energy_pj": dict(msg.energy_pj)}
