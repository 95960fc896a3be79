"""The generic payload: constructors, defaults, zero-copy byte views."""

from __future__ import annotations

import numpy as np
import pytest

from vp.kernel import Command, Payload, Response, as_bytes


def test_read_constructor_defaults():
    p = Payload.read(0x100, 16)
    assert p.command is Command.READ
    assert p.address == 0x100 and p.length == 16 == len(p.data)
    assert p.data.dtype == np.uint8 and not p.data.any()
    assert p.response is Response.INCOMPLETE and not p.is_ok
    assert p.streaming_width == 16
    assert p.byte_enable is None and p.dmi_allowed is False
    assert p.extensions == {}
    assert Payload.read(0, 1).extensions is not p.extensions   # not shared between payloads
    assert repr(p) == "Payload(READ @0x100 len=16 INCOMPLETE)"


def test_write_constructor_is_zero_copy_for_uint8():
    buf = np.arange(32, dtype=np.uint8)
    p = Payload.write(0x2000, buf)
    assert p.command is Command.WRITE and p.length == 32
    assert np.shares_memory(p.data, buf)
    buf[3] = 99
    assert p.data[3] == 99


def test_write_of_wider_dtype_is_a_little_endian_byte_view():
    words = np.array([0x11223344, 0xAABBCCDD], dtype="<u4")
    p = Payload.write(0, words)
    assert p.length == 8 and p.data.dtype == np.uint8
    assert np.shares_memory(p.data, words)
    assert p.data.tolist() == [0x44, 0x33, 0x22, 0x11, 0xDD, 0xCC, 0xBB, 0xAA]


def test_write_of_bytes_bytearray_memoryview():
    assert Payload.write(0, b"\x01\x02\x03").data.tolist() == [1, 2, 3]
    ba = bytearray(b"\x00" * 8)
    p = Payload.write(0, ba)
    ba[0] = 7                                    # a view, not a copy
    assert p.data[0] == 7
    mv = memoryview(ba)[2:6]
    q = Payload.write(0, mv)
    assert q.length == 4
    ba[2] = 5
    assert q.data[0] == 5


def test_as_bytes_zero_copy_for_contiguous_arrays():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = as_bytes(x)
    assert b.dtype == np.uint8 and b.ndim == 1 and len(b) == x.nbytes
    assert np.shares_memory(b, x)
    assert b.tobytes() == x.tobytes()


def test_as_bytes_of_a_strided_view_is_a_correct_copy():
    x = np.arange(16, dtype=np.uint16).reshape(4, 4)
    col = x[:, 1]                                # not contiguous
    b = as_bytes(col)
    assert not np.shares_memory(b, x)
    assert b.tobytes() == np.ascontiguousarray(col).tobytes()


def test_explicit_constructor_fields():
    data = np.zeros(8, np.uint8)
    be = np.array([0xFF, 0], np.uint8)
    p = Payload(Command.IGNORE, 0x40, data, byte_enable=be, streaming_width=4)
    assert p.command is Command.IGNORE and p.byte_enable is be and p.streaming_width == 4
    assert p.data is data
    p.response = Response.OK
    assert p.is_ok
    p.extensions["initiator"] = "dma0"
    assert p.extensions == {"initiator": "dma0"}


def test_response_codes_follow_tlm():
    assert Response.OK == 1 and Response.INCOMPLETE == 0
    errors = [Response.GENERIC_ERROR, Response.ADDRESS_ERROR, Response.COMMAND_ERROR,
              Response.BURST_ERROR, Response.BYTE_ENABLE_ERROR]
    assert all(r < 0 for r in errors) and len(set(errors)) == len(errors)
    assert [Command.READ, Command.WRITE, Command.IGNORE] == [0, 1, 2]


def test_payload_has_no_instance_dict():
    # __slots__: a misspelt field is an error, not a silent new attribute.
    p = Payload.read(0, 4)
    with pytest.raises(AttributeError):
        p.adress = 4
