"""The HBM service model in numpy passes over many shares (:class:`models.hbm_timing.HbmArray`;
the per-share rules are in its module docstring): refresh windows element-wise
(:meth:`_Vector._unblock_v`, :meth:`_Vector._stretch_v`, :meth:`_Vector._after`), one-granule
shares of fewer granules than pseudo-channels (:meth:`_Vector._serve_line`) and a share on
every pseudo-channel with banks as a second axis (:meth:`_Vector._serve_shares`, on the
cached decompositions of :mod:`models.hbm_ranges`). The same arithmetic on scalars is in
:mod:`models.hbm_scalar`.
"""

from __future__ import annotations

import numpy as np

from models.hbm_ranges import _I64
from vp.spec.units import transfer_ps


class _Vector:
    """Mixin of ``HbmArray``: numpy passes. Reads the constants and state arrays ``HbmArray``
    sets up (``_words``: bools of a bank row as 64-bit words, for :meth:`_row_count`)."""

    def _row_count(self, same: np.ndarray) -> np.ndarray:
        """True entries per row of a (shares x banks) bool array, as int64."""
        w = self._words
        if w == 2:
            c = np.bitwise_count(same.view(np.uint64))
            return np.add(c[:, 0], c[:, 1], dtype=_I64)
        if w == 1:
            return np.bitwise_count(same.view(np.uint64))[:, 0].astype(_I64)
        return same.sum(axis=1, dtype=_I64)

    def _unblock_v(self, t: np.ndarray, s: int) -> np.ndarray:
        """:meth:`_unblock` of every element of ``t`` (all >= ``s``, which is not inside a
        refresh window)."""
        refi = self._refi
        hi = t.max()
        if hi < (s // refi + 1) * refi:         # all before the next window: nothing to do
            return t
        lo = t.min()                            # or all in one later quiet interval
        e = lo // refi
        if hi < (e + 1) * refi and lo - e * refi >= self._rfc:
            return t
        rem = t % refi
        win = rem < self._rfc
        if s < refi:
            win &= t >= refi
        if np.count_nonzero(win):
            return np.where(win, t - rem + self._rfc, t)
        return t

    def _stretch_v(self, t: np.ndarray, work, s: int | None = None) -> np.ndarray:
        """:meth:`_stretch` of every element of ``t`` (``work`` a scalar or an array; when
        ``s`` is given, every ``t`` >= ``s``, which is not inside a refresh window)."""
        refi = self._refi
        end = t + work
        if s is not None:
            hi = end.max()
            if hi < (s // refi + 1) * refi:     # all done before the next window
                return end
            if hi <= (t.min() // refi + 1) * refi:   # or all inside one quiet interval
                return end
        over = t % refi
        over += work - refi
        if np.count_nonzero(over > 0):
            np.maximum(over, 0, out=over)
            over += self._avail - 1
            over //= self._avail
            over *= self._rfc
            end += over
        return end

    def _serve_line(self, lo: int, hi: int, first: int, count: int, s: int,
                    arrival: int) -> int:
        """Granules ``first .. first+count-1`` (fewer than pseudo-channels: one granule, one
        bank and row per share) of the burst range ``[lo, hi)`` in one numpy pass over the
        shares (the arithmetic of :meth:`_granule_server`, element-wise)."""
        n, B, g, group, refi = self._n, self._B, self._g, self._group, self._refi
        f0, A = first % n, first // n
        m, end = count, first % n + count
        pcs = self._wrap[f0:end]
        if end <= n:                            # one local granule for all: one bank, one row
            r = A // group
            flat = self._arB[f0:end] + A % B
        else:
            a = np.full(m, A, _I64)
            a[n - f0:] += 1
            r = a // group
            flat = pcs * B + a % B
        work = np.full(m, self._xfer_granule, _I64)
        bursts = None
        front, back = lo - first * g, (first + count) * g - hi
        if front or back:
            bursts = np.full(m, g // self._bb, _I64)
            bursts[0] -= front // self._bb
            bursts[-1] -= back // self._bb
            work[0] = transfer_ps(int(bursts[0]) * self._bb, self._bw)
            work[-1] = transfer_ps(int(bursts[-1]) * self._bb, self._bw)
        busy = self.bus_free[pcs]
        begin = np.maximum(busy, s)
        begin_epoch = begin // refi
        refreshed = self.epoch[pcs] < begin_epoch
        if np.count_nonzero(refreshed):         # banks precharged by a refresh since last use
            self.open_row[pcs[refreshed]] = -1
        opens, acts = self.open_row.reshape(-1), self.act_at.reshape(-1)
        opened, act0 = opens[flat], acts[flat]
        opens[flat] = r                         # open-page policy
        hit = opened == r
        hits = int(np.count_nonzero(hit))
        if hits:                                # hit: tCL once the row is ready
            t_hit = act0 + self._rcd
            np.maximum(t_hit, s, out=t_hit)
        if hits < m:                            # precharge (after tRAS) if open, activate
            t_miss = act0 + self._ras
            np.maximum(t_miss, s, out=t_miss)
            t_miss += self._rp
            closed = opened < 0
            if np.count_nonzero(closed):
                t_miss[closed] = s
            af = self.act_free[pcs]
            np.maximum(t_miss, af, out=t_miss)
        if hits == m:
            t, wait = t_hit, self._cl
        elif not hits:
            t, wait = t_miss, self._rcd + self._cl
        else:
            t = np.where(hit, t_hit, t_miss)
            wait = np.where(hit, self._cl, self._rcd + self._cl)
        t = self._unblock_v(t, s)
        if hits < m:
            if hits:
                miss = ~hit
                acts[flat[miss]] = t[miss]
                self.act_free[pcs[miss]] = t[miss] + self._act
            else:
                acts[flat] = t
                self.act_free[pcs] = t + self._act
        ready = self._stretch_v(t, wait, s)
        np.maximum(ready, busy, out=ready)
        start = self._unblock_v(ready, s)
        done = self._stretch_v(start, work, s)
        done_epoch = done - 1
        done_epoch //= refi
        windows = done_epoch - begin_epoch
        n_windows = int(np.count_nonzero(windows))
        misses = m - hits
        if n_windows:                           # rows reopened after each refresh
            if bursts is None:
                bursts = g // self._bb
            misses += int(np.minimum(windows, bursts - ~hit).sum())
        self.refresh_stalls += m if s != arrival else n_windows
        self.epoch[pcs] = done_epoch
        self.bus_free[pcs] = done
        self.pc_busy_ps[pcs] += done - start
        self.activations += misses
        self.row_misses += misses
        self.row_hits -= misses
        self.steps += 1
        return int(done.max())

    def _after(self, t: np.ndarray, wait, s: int) -> tuple[np.ndarray, np.ndarray]:
        """(``_unblock(t)``, ``_stretch(_unblock(t), wait)``) element-wise (``t`` >= ``s``, which
        is not inside a refresh window; ``t`` a fresh array, may be reused)."""
        refi, rfc = self._refi, self._rfc
        end = t + wait
        hi = end.max()
        if hi < (s // refi + 1) * refi:         # all before the next window: no refresh
            return t, end
        lo = t.min()                            # or all inside one later quiet interval
        e = lo // refi
        if hi < (e + 1) * refi and lo - e * refi >= rfc:
            return t, end
        rem = t % refi
        win = rem < rfc
        if s < refi:
            win &= t >= refi
        if np.count_nonzero(win):               # inside a refresh window: wait for its end
            t = np.where(win, t - rem + rfc, t)
            rem[win] = rfc
            end = t + wait
        rem += wait - refi                      # past the next window's start
        if np.count_nonzero(rem > 0):
            np.maximum(rem, 0, out=rem)
            rem += self._avail - 1
            rem //= self._avail
            rem *= rfc
            end += rem
        return t, end

    def _serve_shares(self, lo: int, hi: int, s: int, arrival: int) -> int:
        """Every share of the burst range ``[lo, hi)`` in one numpy pass; returns the last
        share's end (the per-share arithmetic of :mod:`models.hbm_timing`, element-wise)."""
        d, R = self._decomposition(lo, hi)
        refi, rcd, cl, rp, tact = self._refi, self._rcd, self._cl, self._rp, self._act
        m = d.m
        busy, epoch, af = self.bus_free, self.epoch, self.act_free
        opens, acts = self.open_row, self.act_at       # (updated in place)
        begin = np.maximum(busy, s)                         # when the share has its channel
        begin_epoch = begin // refi
        refreshed = epoch < begin_epoch                     # every bank precharged since
        n_refreshed = int(np.count_nonzero(refreshed))
        if n_refreshed == m:                    # all rows closed: every share starts cold
            if d.touched is not None:
                opens[...] = -1
            same = None
            misses, misses_total, hits = d.pairs, d.pairs_total, 0
            t = np.maximum(af, s)               # activate (no precharge) when allowed
        else:
            if n_refreshed:
                opens[refreshed] = -1
            # Rows: a bank's first row is a hit when open; every other row visited is a miss.
            same = opens == (d.first_rows + R if R else d.first_rows)
            misses = d.pairs - self._row_count(same)
            misses_total = d.pairs_total - int(np.count_nonzero(same))
            open0 = self._open_flat.take(d.b0flat)
            act0 = self._act_flat.take(d.b0flat)
            hit0 = open0 == (d.r0 + R)
            hits = int(np.count_nonzero(hit0))
            # First data: a hit waits tCL; a miss precharges (no earlier than tRAS after the
            # previous activation) when a row is open, then activates and waits tRCD + tCL.
            if hits:
                t_hit = act0 + rcd
                np.maximum(t_hit, s, out=t_hit)
            if hits < m:
                t = act0 + (self._ras + rp)
                np.maximum(t, s + rp, out=t)
                closed = open0 < 0
                if np.count_nonzero(closed):
                    t[closed] = s
                np.maximum(t, af, out=t)
        if hits == m:                           # t: the activation, or the read on a hit
            t, ready = self._after(t_hit, cl, s)
            slot, act_or_s = np.maximum(af, s + rp), s
            rest = misses
        elif not hits:
            act, ready = self._after(t, rcd + cl, s)
            slot, act_or_s = act + tact, act
            rest = misses - 1
        else:
            act, ready = self._after(np.where(hit0, t_hit, t),
                                     np.where(hit0, cl, rcd + cl), s)
            slot = np.where(hit0, np.maximum(af, s + rp), act + tact)
            act_or_s = np.where(hit0, s, act)
            rest = misses - 1 + hit0
        np.maximum(ready, busy, out=ready)
        # Data, bounded by the activation rate and row cycle of the other activations.
        work = d.work
        if isinstance(rest, int):               # the same for every share
            more = rest > 0
            n_more = m if more else 0
        else:
            more = rest > 0
            n_more = int(np.count_nonzero(more))
        if n_more:
            last_act = slot + (rest - 1) * tact
            np.maximum(last_act, act_or_s + d.row_cycle, out=last_act)
            start = self._unblock_v(ready, s)
            bound = last_act - start
            bound += d.first_work + (rcd + cl)
            np.maximum(bound, work, out=bound)
            work = bound if n_more == m else np.where(more, bound, work)
            done = self._stretch_v(start, work, s)
        else:
            start, done = self._after(ready, work, s)
        # Activation times (data-aligned estimates, exact for the first access), next slot.
        if misses_total:
            base = start - (rcd + cl)
            if d.update_all or (same is None and d.touched is None):
                np.add(base[:, None], d.offsets, out=acts)
                np.maximum(acts, s, out=acts)
            else:
                t = base[:, None] + d.offsets
                np.maximum(t, s, out=t)
                if same is None:
                    np.copyto(acts, t, where=d.touched)
                else:                           # (one mask per bank of every share)
                    if d.update_if_new is None:
                        changed = ~same
                    else:
                        changed = np.greater(d.update_if_new, same)
                        if d.update_always is not None:
                            changed |= d.update_always
                    np.putmask(acts, changed, t)
            if hits < m:
                moved = d.last_is_r0
                if moved is True:
                    moved = ~hit0 if hits else None
                elif moved is not False:
                    moved = moved & ~hit0 if hits else moved
                if moved is None:
                    self._act_flat[d.b0flat] = act
                elif moved is not False:
                    self._act_flat[d.b0flat[moved]] = act[moved]
            if n_more:
                t = base + d.max_offset
                np.maximum(t, last_act, out=t)
                t += tact
                slot = t if n_more == m else np.where(more, t, slot)
            new_af = slot if hits == 0 else np.where(misses > 0, slot, af)
        else:
            new_af = af
        last_rows = d.last_rows + R if R else d.last_rows   # open-page policy
        if d.touched is None:
            opens[...] = last_rows
        else:
            np.copyto(opens, last_rows, where=d.touched)
        # Refresh: stalls, and rows reopened after each window inside a share.
        end = int(done.max())
        s_epoch = s // refi
        if end <= (s_epoch + 1) * refi:         # every share inside s's quiet interval
            self.epoch.fill(s_epoch)
            n_windows = 0
        else:
            done_epoch = done - 1
            done_epoch //= refi
            windows = done_epoch - begin_epoch
            n_windows = int(np.count_nonzero(windows))
            if n_windows:
                extra = np.minimum(windows * d.nbanks, d.bursts - misses)
                misses_total += int(extra.sum())
            self.epoch[...] = done_epoch
        self.refresh_stalls += m if s != arrival else n_windows
        self.bus_free[...] = done
        self.act_free[...] = new_af
        self.pc_busy_ps += done
        self.pc_busy_ps -= start
        self.activations += misses_total
        self.row_misses += misses_total
        self.row_hits -= misses_total
        self.steps += 1
        return end
