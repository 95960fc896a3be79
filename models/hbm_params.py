"""HBM organisation and timing parameters: :class:`HbmGeometry` (with the address mapping),
:class:`HbmTiming`, and the closed-form figures the validation compares the model against.
The service model that uses them is :class:`models.hbm_timing.HbmArray`.

Address mapping (system offset inside HBM -> stack, channel, pseudo-channel, bank, row, column),
``g = interleave_bytes``, ``n = stacks * channels_per_stack * pseudo_channels``::

    G  = offset // g                        granule
    pc = G % n                              pseudo-channel index, round-robin over ALL of them:
         stack = pc % stacks                  stacks fastest (spreads the NoC controllers),
         channel = pc // stacks % channels    then channels,
         pseudo_channel = pc // (stacks * channels)   then pseudo-channels
    L  = G // n                             granule index inside its pseudo-channel
         bank = L % banks                     then banks,
         row = L // banks // (row_bytes // g)   then rows;
         column = L // banks % (row_bytes // g) * g + offset % g   (byte inside the row)

With the HBM3 defaults (all powers of two) this is the bit slicing
``row[..:21] col[20:19] bank[18:15] pc[14] ch[13:10] stack[9:8] byte[7:0]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vp.spec.units import KIB, NS, SEC, transfer_ps


@dataclass(frozen=True)
class HbmGeometry:
    """How HBM is organised. Sizes in bytes; counts per parent level.

    Defaults: an HBM3-class stack (JESD238) has 16 independent 64-bit channels, each split into
    2 pseudo-channels of 32 bits with 16 banks (4 bank groups x 4) per pseudo-channel visible
    to the controller and a 1 KiB page (row) per pseudo-channel. Four stacks (64 GiB with 16 GiB
    stacks) match the default board's capacity. A 256 B interleave granule keeps a 64 B line in
    one pseudo-channel while a 32 KiB stream already spreads over all 128; 64 B is the access
    granule of a 32-bit pseudo-channel with BL8 twice over (two column commands).
    """

    stacks: int = 4
    channels_per_stack: int = 16
    pseudo_channels: int = 2
    banks: int = 16
    row_bytes: int = 1 * KIB
    interleave_bytes: int = 256
    burst_bytes: int = 64

    def __post_init__(self):
        for name in ("stacks", "channels_per_stack", "pseudo_channels", "banks", "row_bytes",
                     "interleave_bytes", "burst_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"HbmGeometry.{name} must be a positive integer")
        if self.interleave_bytes % self.burst_bytes:
            raise ValueError("HbmGeometry: interleave_bytes must be a multiple of burst_bytes")
        if self.row_bytes % self.interleave_bytes:
            raise ValueError("HbmGeometry: row_bytes must be a multiple of interleave_bytes")

    @property
    def n_channels(self) -> int:
        """Channels over all stacks."""
        return self.stacks * self.channels_per_stack

    @property
    def n_pseudo_channels(self) -> int:
        """Pseudo-channels over all stacks: the units of bandwidth."""
        return self.n_channels * self.pseudo_channels

    @property
    def granules_per_row(self) -> int:
        return self.row_bytes // self.interleave_bytes

    def decode(self, offset: int) -> tuple[int, int, int, int, int, int]:
        """(stack, channel, pseudo_channel, bank, row, column) of byte ``offset`` (see module
        docstring). ``channel`` counts inside its stack; ``column`` is the byte in the row."""
        g, n = self.interleave_bytes, self.n_pseudo_channels
        s, c = self.stacks, self.channels_per_stack
        granule, byte = divmod(offset, g)
        pc, local = granule % n, granule // n
        rest, bank = divmod(local, self.banks)
        row, col = divmod(rest, self.granules_per_row)
        return pc % s, pc // s % c, pc // (s * c), bank, row, col * g + byte

    def encode(self, stack: int, channel: int, pseudo_channel: int, bank: int, row: int,
               column: int = 0) -> int:
        """Inverse of :meth:`decode`: the byte offset of a location."""
        g = self.interleave_bytes
        pc = stack + self.stacks * (channel + self.channels_per_stack * pseudo_channel)
        local = bank + self.banks * (column // g + self.granules_per_row * row)
        return (pc + self.n_pseudo_channels * local) * g + column % g

    def channel_of(self, pc: int) -> int:
        """Global channel id (``stack * channels_per_stack + channel``) of pseudo-channel ``pc``."""
        s, c = self.stacks, self.channels_per_stack
        return pc % s * c + pc // s % c


@dataclass(frozen=True)
class HbmTiming:
    """DRAM timing; times in ps (rounded up to whole ``tCK = 1 / clock_hz`` when used),
    ``channel_bandwidth`` in bytes/s per pseudo-channel.

    Defaults: HBM3 at 6.4 Gb/s per pin has a 1.6 GHz command clock (data on WDQS/RDQS at twice
    CK, double rate); a 32-bit pseudo-channel moves 6.4 Gb/s x 32 / 8 = 25.6 GB/s (819.2 GB/s
    per stack). tRCD, tCL (read latency) and tRP of ~14 ns and tRAS of 33 ns are the usual
    DRAM core figures (npu.md §4); tREFI = 3.9 us and all-bank tRFC = 350 ns are those of
    16 Gb dies (refresh costs 9 % of time). tRRD_S = 2 ns and tFAW = 16 ns bound the
    activation rate (four per window), as in common HBM2/HBM3 device configurations.
    """

    clock_hz: int = 1_600_000_000
    tRCD: int = 14 * NS
    tCL: int = 14 * NS
    tRP: int = 14 * NS
    tRAS: int = 33 * NS
    tREFI: int = 3900 * NS
    tRFC: int = 350 * NS
    channel_bandwidth: int = 25_600_000_000
    tRRD: int = 2 * NS
    tFAW: int = 16 * NS

    def __post_init__(self):
        for name in ("clock_hz", "channel_bandwidth", "tREFI"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HbmTiming.{name} must be positive")
        for name in ("tRCD", "tCL", "tRP", "tRAS", "tRFC", "tRRD", "tFAW"):
            if getattr(self, name) < 0:
                raise ValueError(f"HbmTiming.{name} cannot be negative")
        if self.q("tRFC") >= self.q("tREFI"):
            raise ValueError("HbmTiming: tRFC must be shorter than tREFI")

    @property
    def tck_ps(self) -> float:
        return SEC / self.clock_hz

    def cycles(self, name: str) -> int:
        """Parameter ``name`` in whole clock cycles (rounded up)."""
        return -(-getattr(self, name) * self.clock_hz // SEC)

    def q(self, name: str) -> int:
        """Parameter ``name`` rounded up to whole cycles, in ps."""
        return -(-self.cycles(name) * SEC // self.clock_hz)

    @property
    def t_act_ps(self) -> int:
        """Minimum spacing of activations on one pseudo-channel: max(tRRD, tFAW / 4)."""
        return max(self.q("tRRD"), -(-self.q("tFAW") // 4))


# -- formulas the validation compares against (DESIGN.md §7) ----------------------------------

def peak_bandwidth(geometry: HbmGeometry, timing: HbmTiming) -> int:
    """All pseudo-channels streaming (bytes/s)."""
    return geometry.n_pseudo_channels * timing.channel_bandwidth


def refresh_limited_peak(geometry: HbmGeometry, timing: HbmTiming) -> float:
    """Peak bandwidth x (1 - tRFC / tREFI) (bytes/s)."""
    return peak_bandwidth(geometry, timing) * (1 - timing.q("tRFC") / timing.q("tREFI"))


def row_miss_formula_ps(timing: HbmTiming) -> int:
    """(tRP + tRCD + tCL) * tCK: first data of an access to a bank with another row open."""
    return -(-(timing.cycles("tRP") + timing.cycles("tRCD") + timing.cycles("tCL")) * SEC
             // timing.clock_hz)


def burst_transfer_ps(geometry: HbmGeometry, timing: HbmTiming) -> int:
    """Time one burst occupies a pseudo-channel's data bus."""
    return transfer_ps(geometry.burst_bytes, timing.channel_bandwidth)
