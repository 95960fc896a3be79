"""The zero-copy codecs of ``vp.proto.wire`` speak exactly the protobuf wire format of
``WriteMemRequest`` and ``ReadMemChunk``: what they write, protobuf reads, and vice versa."""

from __future__ import annotations

import numpy as np
import pytest

from vp.proto import npuvp_pb2 as pb
from vp.proto.wire import (decode_read_mem_chunk, decode_write_mem, encode_read_mem_chunk,
                           encode_write_mem)

PAYLOADS = [b"", b"\x00", b"abc", bytes(range(256)) * 700]          # 0, 1, 3, 179200 bytes
HEADERS = [{}, {"address": 0}, {"address": 0x1000, "total_bytes": 4},
           {"total_bytes": 300}, {"address": (1 << 64) - 1, "total_bytes": (1 << 64) - 1}]


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("data", PAYLOADS)
def test_write_mem_matches_protobuf(header, data):
    raw = encode_write_mem(np.frombuffer(data, np.uint8), **header)
    assert raw == pb.WriteMemRequest(data=data, **header).SerializeToString()
    msg = pb.WriteMemRequest.FromString(raw)
    assert msg.data == data
    for name in ("address", "total_bytes"):
        assert msg.HasField(name) == (name in header)
    decoded = decode_write_mem(raw)
    assert bytes(decoded.data) == data
    assert (decoded.address, decoded.total_bytes) == (header.get("address"),
                                                      header.get("total_bytes"))


@pytest.mark.parametrize("now_ps", [0, 1, 300, (1 << 64) - 1])
@pytest.mark.parametrize("data", PAYLOADS)
def test_read_mem_chunk_matches_protobuf(data, now_ps):
    raw = encode_read_mem_chunk(memoryview(data), now_ps)
    assert raw == pb.ReadMemChunk(data=data, now_ps=now_ps).SerializeToString()
    view, now = decode_read_mem_chunk(raw)
    assert (bytes(view), now) == (data, now_ps)


def test_decoding_does_not_copy_the_chunk():
    raw = encode_read_mem_chunk(b"x" * 1000, 5)
    view, _ = decode_read_mem_chunk(raw)
    assert view.obj is raw


def test_decoder_skips_unknown_fields_and_accepts_any_order():
    # field 9 (varint), field 10 (fixed64), field 11 (bytes), then the known fields reversed
    raw = (b"\x48\x05" + b"\x51" + bytes(8) + b"\x5a\x02hi"
           + pb.ReadMemChunk(now_ps=77).SerializeToString()
           + pb.ReadMemChunk(data=b"data").SerializeToString())
    view, now = decode_read_mem_chunk(raw)
    assert (bytes(view), now) == (b"data", 77)


@pytest.mark.parametrize("raw", [b"\x0a\x05ab", b"\x08\xff", b"\x0b", b"\x1a\x80\x80"])
def test_truncated_or_malformed_input_is_refused(raw):
    with pytest.raises(ValueError):
        decode_write_mem(raw)
