"""Bookkeeping of the groups of pseudo-channels in the same state, for the HBM service model
(:class:`models.hbm_timing.HbmArray`; the rules are in its module docstring).

``_cuts`` are the starts of the groups of pseudo-channels whose whole state (data bus,
activation slot, refresh interval, open rows, activation times) is identical, ``_tcuts`` those
whose timing state (the first three) is; None when unknown or too many (``GROUPS_MAX``,
``COLD_PIECES``). This file keeps them up to date (points added when a pass makes
pseudo-channels differ, found again from the state) and splits a range into runs of
pseudo-channels with the same share (:meth:`_Groups._runs`). The paths that serve a range one
group at a time are in :mod:`models.hbm_pieces`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np


class _Groups:
    """Mixin of ``HbmArray``: group (``_cuts``) and timing-group (``_tcuts``) bookkeeping.
    Reads ``_n``, ``_g``, the state arrays and the constants ``GROUPS_MAX``, ``RECUT_MAX``,
    ``COLD_PIECES`` of ``HbmArray``; :meth:`_recut` counts differing banks with
    ``_row_count`` (:mod:`models.hbm_vector`)."""

    def _add_cuts(self, points) -> None:
        """Pseudo-channels on either side of each point may differ from now on (in the whole
        state, ``_cuts``, and in the timing state, ``_tcuts``)."""
        self._cuts = self._with_points(self._cuts, points, self.GROUPS_MAX)
        # (timing groups only serve the cold path: unknown past COLD_PIECES, found again then)
        self._tcuts = self._with_points(self._tcuts, points, self.COLD_PIECES)
        self._coarser_tcuts()

    def _with_points(self, cuts: list[int] | None, points, most: int) -> list[int] | None:
        """``cuts`` (sorted group starts) with the inner ``points`` added, or None (groups
        unknown) when that makes more than ``most``."""
        if cuts is None:
            return None
        n = self._n
        for x in points:
            if 0 < x < n:
                i = bisect_left(cuts, x)
                if i == len(cuts) or cuts[i] != x:
                    cuts.insert(i, x)
        return None if len(cuts) > most else cuts

    def _coarser_tcuts(self) -> None:
        # Groups of identical whole state have identical timing state too: the fewer groups
        # of the two are the timing groups (the cold path costs one share per group).
        cuts = self._cuts
        if (cuts is not None and len(cuts) <= self.COLD_PIECES
                and (self._tcuts is None or len(cuts) < len(self._tcuts))):
            self._tcuts = list(cuts)

    def _retcut(self) -> None:
        """Find the groups of pseudo-channels in the same timing state again (``_tcuts``; the
        data bus, activation slot and refresh interval of the last use), if few."""
        differs = self.bus_free[1:] != self.bus_free[:-1]
        differs |= self.act_free[1:] != self.act_free[:-1]
        differs |= self.epoch[1:] != self.epoch[:-1]
        if np.count_nonzero(differs) < self.COLD_PIECES:
            self._tcuts = [0] + (np.flatnonzero(differs) + 1).tolist()

    def _groups_in(self, pc: int, count: int) -> int:
        """Groups met by ``count`` consecutive pseudo-channels from ``pc`` (wrapping)."""
        cuts, end = self._cuts, pc + count
        if end <= self._n:
            return bisect_left(cuts, end) - bisect_right(cuts, pc) + 1
        return len(cuts) - bisect_right(cuts, pc) + bisect_left(cuts, end - self._n) + 1

    def _recut(self) -> None:
        """Find the groups again after a pass over every pseudo-channel (states converge, e.g.
        after idle time): cheap unless the data buses already agree almost everywhere."""
        most = self.RECUT_MAX
        differs = None
        for a in (self.bus_free, self.act_free, self.epoch):   # cheapest first
            d = a[1:] != a[:-1]
            differs = d if differs is None else differs | d
            if np.count_nonzero(differs) >= most:
                return
        for a in (self.open_row, self.act_at):
            differs |= self._row_count(a[1:] != a[:-1]) > 0
            if np.count_nonzero(differs) >= most:
                return
        self._cuts = [0] + (np.flatnonzero(differs) + 1).tolist()
        self._coarser_tcuts()

    def _runs(self, lo: int, hi: int, first: int, count: int) -> list[tuple]:
        """The shares of burst range ``[lo, hi)`` as runs of consecutive pseudo-channels with
        the same share: ``(pc0, pc1, a, k, nbytes)`` (local granules ``[a, a+k)``)."""
        n, g = self._n, self._g
        f0, A = first % n, first // n
        front, back = lo - first * g, (first + count) * g - hi
        if count >= n:
            q, r = divmod(count, n)
            if not (f0 or r or front or back):          # aligned: one run
                return [(0, n, A, q, q * g)]
            bounds = {0, n, f0, (f0 + r) % n}
        else:
            q = r = 0
            end = f0 + count
            if end <= n:
                if not (front or back):
                    return [(f0, end, A, 1, g)]
                bounds = {f0, end}
            else:
                bounds = {0, end - n, f0, n}
        last_pc = (first + count - 1) % n
        if front:
            bounds.update((f0, f0 + 1))
        if back:
            bounds.update((last_pc, last_pc + 1))
        bounds = sorted(bounds)
        runs = []
        for x0, x1 in zip(bounds, bounds[1:]):
            j = (x0 - f0) % n
            if j >= count:
                continue                                # not touched (count < n)
            k = q + (j < r) if q else 1
            nbytes = k * g
            if x0 == f0:
                nbytes -= front
            if x0 == last_pc:
                nbytes -= back
            runs.append((x0, x1, A + (x0 < f0), k, nbytes))
        return runs

    def _cut_granules(self, first: int, count: int, front: int, back: int) -> None:
        """Groups after granules ``first .. first+count-1`` (fewer than pseudo-channels, or one)
        were served one by one, ``front`` / ``back`` bytes off the first / last: split around
        the run (the points of :meth:`_runs`)."""
        n = self._n
        f0 = first % n
        if count == 1:                          # its own group, timing state included
            self._add_cuts((f0, f0 + 1))
            return
        end = f0 + count
        points = [f0, end] if end <= n else [end - n, f0]   # (0 and n: no cuts)
        if front:
            points.append(f0 + 1)
        if back:
            points += ((end - 1) % n, (end - 1) % n + 1)
        self._cuts = self._with_points(self._cuts, points, self.GROUPS_MAX)
        # Open rows may have made the timing differ inside a timing group: found again from
        # the state when needed.
        self._tcuts = None
