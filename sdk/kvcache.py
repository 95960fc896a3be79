"""Host-side bookkeeping of the paged KV cache in HBM (the pages themselves live on the board).

The pool has ``n_blocks`` blocks of ``page_tokens`` positions (layout: ``sdk.compiler.plan``).
A sequence owns a block table, grown as it gets longer and released when it finishes, so
sequences of different lengths share the pool without reserving ``max_context`` each.
"""

from __future__ import annotations


class KVCacheFull(RuntimeError):
    """No free block left for a growing sequence."""


class PagedKVCache:
    """Block tables of live sequences over a pool of ``n_blocks`` blocks."""

    def __init__(self, n_blocks: int, page_tokens: int):
        self.page_tokens = page_tokens
        self._free = list(range(n_blocks - 1, -1, -1))      # pop() hands out 0, 1, 2...
        self.tables: dict[int, list[int]] = {}

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    def reserve(self, seq: int, positions: int) -> list[int]:
        """Grow sequence ``seq``'s table to cover ``positions`` positions; returns the table."""
        table = self.tables.setdefault(seq, [])
        need = -(-positions // self.page_tokens) - len(table)
        if need > len(self._free):
            raise KVCacheFull(f"KV cache full: sequence {seq} needs {need} more blocks of "
                              f"{self.page_tokens} positions, {len(self._free)} are free")
        table.extend(self._free.pop() for _ in range(max(0, need)))
        return table

    def release(self, seq: int) -> None:
        """Return sequence ``seq``'s blocks to the pool."""
        self._free.extend(reversed(self.tables.pop(seq, [])))

    def release_all(self) -> None:
        for seq in list(self.tables):
            self.release(seq)
