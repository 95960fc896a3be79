"""SparseMemory: byte-exact against a numpy reference, memmove-safe copies, lazy pages,
plain-data snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from vp.kernel import SparseMemory

GIB = 1 << 30


def test_random_writes_and_reads_match_a_numpy_reference():
    rng = np.random.default_rng(1)
    size, page = 1 << 20, 1 << 12
    mem = SparseMemory(size, page)
    ref = np.zeros(size, np.uint8)
    for _ in range(400):
        n = int(rng.integers(1, 3 * page))            # often spans 2-4 pages
        off = int(rng.integers(0, size - n))
        data = rng.integers(0, 256, n, dtype=np.uint8)
        mem.write(off, data)
        ref[off:off + n] = data
    for _ in range(400):
        n = int(rng.integers(0, 3 * page))
        off = int(rng.integers(0, size - n))
        assert np.array_equal(mem.read(off, n), ref[off:off + n])
    assert np.array_equal(mem.read(0, size), ref)


def test_write_does_not_alias_the_caller_buffer():
    mem = SparseMemory(1 << 16, 1 << 12)
    data = np.arange(16, dtype=np.uint8)
    mem.write(0x100, data)
    data[:] = 0
    assert mem.read(0x100, 16).tolist() == list(range(16))


@pytest.mark.parametrize("src, dst, n", [
    (100, 150, 300),      # overlapping, destination above the source (copy from the end)
    (150, 100, 300),      # overlapping, destination below the source
    (0, 1, 1000),
    (1, 0, 1000),
    (64, 64, 200),        # onto itself
    (0, 2000, 500),       # disjoint
    (3000, 10, 900),
])
@pytest.mark.parametrize("chunk", [7, 64, 1 << 22])
def test_copy_is_memmove_against_numpy(src, dst, n, chunk):
    rng = np.random.default_rng(src * 7 + dst)
    size = 4096
    mem = SparseMemory(size, page_bytes=64)             # small pages: every copy spans many
    ref = rng.integers(0, 256, size, dtype=np.uint8)
    ref[3500:] = 0                                      # leave some pages unwritten
    mem.write(0, ref[:3500])
    mem.copy(src, dst, n, chunk=chunk)
    ref[dst:dst + n] = ref[src:src + n].copy()
    assert np.array_equal(mem.read(0, size), ref)


def test_unwritten_bytes_read_zero():
    mem = SparseMemory(1 << 20, 1 << 12)
    assert not mem.read(12345, 5000).any()
    out = np.full(100, 0xAB, np.uint8)
    mem.write(0x1000 + 50, np.ones(10, np.uint8))      # page 1 partly written
    mem.read_into(0x1000 - 40, out)                    # spans absent page 0 and page 1
    expected = np.zeros(100, np.uint8)
    expected[90:100] = 1
    assert np.array_equal(out, expected)


def test_huge_memory_allocates_only_touched_pages():
    mem = SparseMemory(64 * GIB)                        # default 64 KiB pages
    assert mem.allocated_bytes == 0
    assert not mem.read(40 * GIB, 4096).any()          # reads do not allocate
    assert mem.allocated_bytes == 0
    mem.write(40 * GIB + 5, np.array([1, 2, 3], np.uint8))
    assert mem.allocated_bytes == mem.page_bytes == 1 << 16
    mem.write(64 * GIB - (1 << 16) - 2, np.ones(4, np.uint8))   # straddles two pages
    assert mem.allocated_bytes == 3 * (1 << 16)
    assert mem.read(40 * GIB + 4, 5).tolist() == [0, 1, 2, 3, 0]
    assert mem.read(64 * GIB - (1 << 16) - 3, 6).tolist() == [0, 1, 1, 1, 1, 0]
    page = mem.page(7)                                   # DMI may ask for a page: allocated
    assert page.dtype == np.uint8 and len(page) == 1 << 16
    assert mem.allocated_bytes == 4 * (1 << 16)


def test_check_bounds():
    mem = SparseMemory(1000, 256)
    assert mem.check(0, 1000) and mem.check(999, 1) and mem.check(1000, 0)
    assert not mem.check(999, 2) and not mem.check(-1, 1) and not mem.check(0, -1)


def test_bad_geometry_refused():
    with pytest.raises(ValueError, match="page size 1000 must be a power of two"):
        SparseMemory(1 << 20, 1000)
    with pytest.raises(ValueError, match="memory size 0 must be positive"):
        SparseMemory(0)


def test_state_round_trip():
    rng = np.random.default_rng(3)
    mem = SparseMemory(1 << 20, 1 << 12)
    for off in (0, 0x5000 - 3, 0xFF000):
        mem.write(off, rng.integers(0, 256, 100, dtype=np.uint8))
    before = mem.read(0, 1 << 20)
    snap = mem.state()
    assert snap["size"] == 1 << 20 and snap["page_bytes"] == 1 << 12
    assert set(snap["pages"]) == {0, 4, 5, 0xFF}
    mem.write(0, np.full(64, 0xEE, np.uint8))           # the snapshot is a copy
    mem.write(0x80000, np.ones(8, np.uint8))
    assert np.array_equal(snap["pages"][0][:64], before[:64])
    mem.load_state(snap)
    assert np.array_equal(mem.read(0, 1 << 20), before)
    assert mem.allocated_bytes == 4 * (1 << 12)
    mem.write(0, np.full(8, 0x55, np.uint8))             # restored pages are not the snapshot's
    assert snap["pages"][0][0] == before[0]
    other = SparseMemory(1 << 20, 1 << 12)               # restore into a fresh memory
    other.load_state(mem.state())
    assert np.array_equal(other.read(0, 1 << 20), mem.read(0, 1 << 20))


def test_state_with_string_keys_and_list_pages_loads():
    # Plain data may come back from a serialiser with string keys and lists.
    mem = SparseMemory(1 << 13, 1 << 12)
    mem.write(0x1000, np.array([9, 8, 7], np.uint8))
    snap = mem.state()
    plain = {"size": snap["size"], "page_bytes": snap["page_bytes"],
             "pages": {str(i): p.tolist() for i, p in snap["pages"].items()}}
    fresh = SparseMemory(1 << 13, 1 << 12)
    fresh.load_state(plain)
    assert fresh.read(0x1000, 3).tolist() == [9, 8, 7]


def test_load_state_geometry_mismatch_refused():
    snap = SparseMemory(1 << 20, 1 << 12).state()
    with pytest.raises(ValueError, match="geometry does not match"):
        SparseMemory(1 << 21, 1 << 12).load_state(snap)
    with pytest.raises(ValueError, match="geometry does not match"):
        SparseMemory(1 << 20, 1 << 13).load_state(snap)


def test_clear_forgets_every_page():
    mem = SparseMemory(1 << 16, 1 << 12)
    mem.write(100, np.ones(10, np.uint8))
    mem.clear()
    assert mem.allocated_bytes == 0 and not mem.read(100, 10).any()
