"""The system address map: where HBM and each core's SRAM sit, shared by the device models,
the command streams the SDK emits, and the driver.

* HBM occupies ``[hbm.base, hbm.base + hbm.size)`` (from the board file).
* Core ``i``'s SRAM is the aperture ``[sram_base(i), sram_base(i) + sram bytes)``, so DMA
  descriptors move HBM↔SRAM and SRAM↔SRAM with plain system addresses.
* The host-memory window ``[HOST_BASE, HOST_BASE + host_link.window)``: pinned host buffers
  the DMA engines reach across the host link (host↔HBM copies), which the host fills and drains
  with ordinary memory requests.

Core ids are global: the board file's ``cores.ca`` first, then ``cores.cf``, then
``cores.unified``, each in order.
"""

from __future__ import annotations

#: First SRAM aperture (16 TiB): above any HBM this architecture can hold.
SRAM_BASE = 1 << 44
#: Distance between consecutive cores' SRAM apertures (4 GiB: the largest SRAM a core may have).
SRAM_STRIDE = 1 << 32
#: Host-memory window (128 TiB): the device's view of pinned host buffers across the link.
HOST_BASE = 1 << 47
#: Most cores a board may have (the core masks of packets and instructions are 64-bit).
MAX_CORES = 64


def sram_base(core_id: int) -> int:
    """System address of byte 0 of core ``core_id``'s SRAM."""
    if not 0 <= core_id < MAX_CORES:
        raise ValueError(f"core id {core_id} is outside 0..{MAX_CORES - 1}")
    return SRAM_BASE + core_id * SRAM_STRIDE


def sram_owner(address: int) -> tuple[int, int] | None:
    """(core id, offset in its SRAM) of a system address in an SRAM aperture, else None."""
    if address < SRAM_BASE:
        return None
    core_id, offset = divmod(address - SRAM_BASE, SRAM_STRIDE)
    return (core_id, offset) if core_id < MAX_CORES else None
