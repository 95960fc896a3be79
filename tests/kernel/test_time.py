"""Simulated time: integer picoseconds, unit constants, parsing and formatting (vp.spec.units,
re-exported by vp.kernel.time)."""

from __future__ import annotations

import pytest

from vp.kernel import time as ktime
from vp.spec import units
from vp.spec.units import (GIB, KIB, MIB, MS, NS, PS, SEC, US, cycles_to_ps, format_size,
                           format_time, parse_bandwidth, parse_frequency, parse_size,
                           parse_time, transfer_ps)


def test_unit_constants_are_integer_picoseconds():
    assert (PS, NS, US, MS, SEC) == (1, 10**3, 10**6, 10**9, 10**12)
    assert all(type(u) is int for u in (PS, NS, US, MS, SEC))
    assert (KIB, MIB, GIB) == (1 << 10, 1 << 20, 1 << 30)


def test_kernel_reexports_the_shared_units():
    # One source for time units: the kernel must not define its own.
    for name in ("PS", "NS", "US", "MS", "SEC", "transfer_ps", "cycles_to_ps", "format_time",
                 "parse_time"):
        assert getattr(ktime, name) is getattr(units, name), name


@pytest.mark.parametrize("text, ps", [
    ("500 ns", 500 * NS),
    ("2us", 2 * US),
    ("1.5 ms", 1_500 * MS // 1_000),
    ("3 S", 3 * SEC),            # units are case-insensitive
    ("  7 ps ", 7),              # surrounding blanks
    ("1e3 ps", 1_000),
    ("1.2 us", 1_200_000),       # no float residue
    ("250", 250),                # a bare number is already ps
    (42, 42),
    (0, 0),
])
def test_parse_time(text, ps):
    assert parse_time(text) == ps
    assert type(parse_time(text)) is int


@pytest.mark.parametrize("text, fragments", [
    ("5 parsecs", ["'5 parsecs'", "unknown time unit 'parsecs'", "ps, ns, us, ms, s",
                   "'500 ns'"]),
    ("fast", ["'fast'", "is not a time", "'500 ns'"]),
    ("ns", ["'ns'", "is not a time"]),
    ("-5 ns", ["'-5 ns'", "is not a time"]),
    (-5, ["-5", "cannot be negative"]),
    (True, ["True", "is not a time"]),
])
def test_parse_time_errors_name_the_text_and_the_expected_form(text, fragments):
    with pytest.raises(ValueError) as info:
        parse_time(text)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize("text, nbytes", [
    ("64 GiB", 64 * GIB), ("4KiB", 4 * KIB), ("1 GB", 10**9), ("1.5 KiB", 1536),
    ("512", 512), (4096, 4096), ("2 mib", 2 * MIB),
])
def test_parse_size(text, nbytes):
    assert parse_size(text) == nbytes


def test_parse_size_errors():
    with pytest.raises(ValueError, match=r"'0\.3 B' is not a whole number of bytes"):
        parse_size("0.3 B")
    with pytest.raises(ValueError, match=r"unknown size unit 'gibs'.*kib.*gib"):
        parse_size("5 GiBs")


def test_parse_bandwidth_and_frequency():
    assert parse_bandwidth("16 GB/s") == 16 * 10**9
    assert parse_bandwidth("25.6 GiB/s") == round(25.6 * GIB)
    assert parse_bandwidth(1000) == 1000
    assert parse_frequency("1.2 GHz") == 1_200_000_000
    assert parse_frequency("800 MHz") == 800_000_000
    with pytest.raises(ValueError, match="a bandwidth must be positive"):
        parse_bandwidth("0 GB/s")
    with pytest.raises(ValueError, match="a frequency must be positive"):
        parse_frequency("0 Hz")
    with pytest.raises(ValueError, match="unknown frequency unit 'ghz/s'"):
        parse_frequency("1 GHz/s")


def test_transfer_and_cycle_times_round_up_to_whole_ps():
    assert transfer_ps(64, 64 * 10**9) == 1_000             # 64 B at 64 GB/s: 1 ns
    assert transfer_ps(1, 3) == -(-SEC // 3)                # rounded up, never down
    assert transfer_ps(0, 10**9) == 0
    assert cycles_to_ps(3, 10**9) == 3 * NS
    assert cycles_to_ps(1, 3 * 10**9) == 334                # 333.3 ps -> 334
    assert cycles_to_ps(0, 10**9) == 0


@pytest.mark.parametrize("ps, text", [
    (0, "0 ps"), (999, "999 ps"), (2_500, "2.5 ns"), (1_500_000, "1.5 us"),
    (MS, "1 ms"), (3 * SEC, "3 s"),
])
def test_format_time(ps, text):
    assert format_time(ps) == text


@pytest.mark.parametrize("ps", [0, 7, 2_500, 1_500_000, 250 * MS, 3 * SEC])
def test_format_then_parse_round_trips(ps):
    assert parse_time(format_time(ps)) == ps


def test_format_size():
    assert format_size(64 * GIB) == "64 GiB"
    assert format_size(4 * KIB) == "4 KiB"
    assert format_size(1536) == "1536 B"
    assert parse_size(format_size(64 * GIB)) == 64 * GIB
