"""Units shared by board files, models and the driver: time in integer picoseconds, sizes in
bytes, bandwidth in bytes per second, frequency in hertz.

Parsers accept either a plain number (already in the base unit) or a string with a unit, e.g.
``'500 ns'``, ``'64 GiB'``, ``'16 GB/s'``, ``'1.2 GHz'``. They raise ``ValueError`` with a
message naming the text and the expected form.
"""

from __future__ import annotations

import re

PS = 1
NS = 1_000 * PS
US = 1_000 * NS
MS = 1_000 * US
SEC = 1_000 * MS

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40

_TIME = {"ps": PS, "ns": NS, "us": US, "ms": MS, "s": SEC}
_SIZE = {"b": 1, "kib": KIB, "mib": MIB, "gib": GIB, "tib": TIB,
         "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_RATE = {"b/s": 1, "kb/s": 10**3, "mb/s": 10**6, "gb/s": 10**9, "tb/s": 10**12,
         "kib/s": KIB, "mib/s": MIB, "gib/s": GIB, "tib/s": TIB}
_FREQ = {"hz": 1, "khz": 10**3, "mhz": 10**6, "ghz": 10**9}

_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?)\s*([a-z/]*)\s*$", re.I)


def _parse(text, table: dict[str, int], what: str, example: str, default_unit: str) -> float:
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a {what} (expected e.g. {example})")
    if isinstance(text, (int, float)):
        value, unit = float(text), default_unit
    else:
        m = _NUMBER_UNIT.match(str(text))
        if not m:
            raise ValueError(f"{text!r} is not a {what} (expected e.g. {example})")
        value, unit = float(m.group(1)), (m.group(2) or default_unit).lower()
    if unit not in table:
        raise ValueError(f"{text!r}: unknown {what} unit {unit!r} "
                         f"(expected one of {', '.join(table)}; e.g. {example})")
    if value < 0:
        raise ValueError(f"{text!r}: a {what} cannot be negative")
    return value * table[unit]


def parse_time(text: str | int) -> int:
    """'500 ns' / '2us' / integer ps -> integer picoseconds."""
    return round(_parse(text, _TIME, "time", "'500 ns'", "ps"))


def parse_size(text: str | int) -> int:
    """'64 GiB' / '4KiB' / integer bytes -> integer bytes (must be whole)."""
    value = _parse(text, _SIZE, "size", "'64 GiB'", "b")
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(value)


def parse_bandwidth(text: str | int) -> int:
    """'16 GB/s' / '25.6 GiB/s' / integer bytes per second -> integer bytes per second."""
    value = round(_parse(text, _RATE, "bandwidth", "'16 GB/s'", "b/s"))
    if value <= 0:
        raise ValueError(f"{text!r}: a bandwidth must be positive")
    return value


def parse_frequency(text: str | int) -> int:
    """'1.2 GHz' / integer hertz -> integer hertz."""
    value = round(_parse(text, _FREQ, "frequency", "'1 GHz'", "hz"))
    if value <= 0:
        raise ValueError(f"{text!r}: a frequency must be positive")
    return value


def transfer_ps(nbytes: int, bytes_per_s: int) -> int:
    """Time to move ``nbytes`` at ``bytes_per_s``, rounded up to whole picoseconds."""
    if nbytes <= 0:
        return 0
    return -(-nbytes * SEC // int(bytes_per_s))


def cycles_to_ps(cycles: int, clock_hz: int) -> int:
    """Duration of ``cycles`` clock cycles at ``clock_hz``, rounded up to whole picoseconds."""
    return -(-int(cycles) * SEC // int(clock_hz))


def format_time(ps: int) -> str:
    """Render ``ps`` with the largest unit that keeps it readable, e.g. '1.5 us'."""
    for name, scale in (("s", SEC), ("ms", MS), ("us", US), ("ns", NS)):
        if abs(ps) >= scale:
            return f"{ps / scale:g} {name}"
    return f"{ps} ps"


def format_size(nbytes: int) -> str:
    """Render a byte count with a binary unit, e.g. '64 GiB'."""
    for name, scale in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {name}"
    return f"{nbytes} B"
