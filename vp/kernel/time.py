"""Simulated time in the kernel: integer picoseconds everywhere.

The unit constants and conversions live in :mod:`vp.spec.units` (the one source shared with
board files and the driver); they are re-exported here for model code.
"""

from vp.spec.units import MS, NS, PS, SEC, US, cycles_to_ps, format_time, parse_time, transfer_ps

__all__ = ["PS", "NS", "US", "MS", "SEC", "transfer_ps", "cycles_to_ps", "format_time", "parse_time"]
