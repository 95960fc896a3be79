"""The HBM service model on scalars (:class:`models.hbm_timing.HbmArray`; the per-share rules
are in its module docstring): refresh windows for one time (:meth:`_Scalar._unblock`,
:meth:`_Scalar._stretch`), the granule server (one-granule shares one by one: the hot path of
small accesses) and :meth:`_Scalar._serve_banks` (one multi-granule share, its banks as small
numpy rows). The same arithmetic over many shares at once is in :mod:`models.hbm_vector`.
"""

from __future__ import annotations

import numpy as np

from vp.spec.units import SEC


class _Scalar:
    """Mixin of ``HbmArray``: shares served one at a time on Python ints. Reads the constants
    ``HbmArray.__init__`` sets (``_n``, ``_B``, ``_g``, ``_group``, ``_bb``, ``_bw``, ``_xg``,
    ``_refi``, ``_rfc``, ``_avail``, ``_rcd``, ``_cl``, ``_rp``, ``_ras``, ``_act``), the
    scalar views of the state (``_mv``) and the row patterns (:mod:`models.hbm_ranges`)."""

    def _unblock(self, t: int) -> int:
        """``t``, or the end of the refresh window it falls in."""
        e = t // self._refi
        return e * self._refi + self._rfc if e and t - e * self._refi < self._rfc else t

    def _stretch(self, t: int, work: int) -> int:
        """End of ``work`` ps of activity from ``t`` (not in a window), refresh windows excluded:
        ``t + work`` plus ``tRFC`` for every window the activity runs into."""
        over = t % self._refi + work - self._refi
        if over <= 0:
            return t + work
        return t + work + (over + self._avail - 1) // self._avail * self._rfc

    def _granule_server(self):
        """``serve(first, count, front, back, s, stalled) -> (end, activations, refresh
        stalls)``: granules ``first .. first+count-1`` (one share each: one bank, one row),
        ``front`` bytes off the first and ``back`` off the last, served one by one in order on
        their pseudo-channels, updating them; the end is the latest. A closure over the
        constants with the loop inside: the hot path of small accesses."""
        n, B, g, group, bb, bw, xg = (self._n, self._B, self._g, self._group, self._bb, self._bw,
                                      self._xg)
        refi, rfc, rcd, cl, rp, ras, tact = (self._refi, self._rfc, self._rcd, self._cl,
                                             self._rp, self._ras, self._act)
        bus_free, act_free, epoch, open_row, act_at, pc_busy = self._mv
        closed_row, stretch = self._closed_row, self._stretch

        def serve(first: int, count: int, front: int, back: int, s: int,
                  stalled: bool) -> tuple[int, int, int]:
            a, pc = divmod(first, n)
            bank, r = a % B, a // group
            last = count - 1
            done_all = misses_all = stalls = 0
            # s is not inside a refresh window: the windows matter from quiet_end on only.
            s_epoch = s // refi
            quiet_end = (s_epoch + 1) * refi
            for j in range(count):
                if pc == n:                     # wrapped: the next local granule
                    pc, a = 0, a + 1
                    bank, r = a % B, a // group
                busy = bus_free[pc]
                begin_epoch = busy // refi if busy > s else s_epoch
                row0 = pc * B
                if begin_epoch > epoch[pc]:     # refreshed since last use: banks precharged
                    open_row[row0:row0 + B] = closed_row
                i = row0 + bank
                opened, act0 = open_row[i], act_at[i]
                open_row[i] = r                 # open-page policy
                if opened == r:                 # hit: tCL once the row is ready
                    miss, wait = 0, cl
                    t = act0 + rcd
                    if t < s:
                        t = s
                else:                           # precharge (after tRAS) if open, activate
                    miss, wait = 1, rcd + cl
                    if opened >= 0:
                        t = act0 + ras
                        if t < s:
                            t = s
                        t += rp
                    else:
                        t = s
                    af = act_free[pc]
                    if af > t:
                        t = af
                if t >= quiet_end:              # not inside a refresh window
                    e = t // refi
                    if t - e * refi < rfc:
                        t = e * refi + rfc
                if miss:
                    act_at[i] = t
                    act_free[pc] = t + tact
                ready = t + wait
                if ready > quiet_end and (t < quiet_end or t % refi + wait > refi):
                    ready = stretch(t, wait)
                start = ready if ready > busy else busy
                if start >= quiet_end:
                    e = start // refi
                    if start - e * refi < rfc:
                        start = e * refi + rfc
                if j and j != last or not (front or back):
                    nbytes, work = g, xg
                else:                           # the first or last granule, trimmed
                    nbytes = g - (0 if j else front) - (back if j == last else 0)
                    work = -(-nbytes * SEC // bw)
                done = start + work
                if done > quiet_end:
                    if start < quiet_end or start % refi + work > refi:
                        done = stretch(start, work)
                    done_epoch = (done - 1) // refi
                else:
                    done_epoch = s_epoch
                epoch[pc] = done_epoch
                bus_free[pc] = done
                pc_busy[pc] += done - start
                if done_epoch != begin_epoch:   # rows reopened after the refresh
                    miss += min(done_epoch - begin_epoch, nbytes // bb - miss)
                    stalls += 1
                elif stalled:
                    stalls += 1
                misses_all += miss
                if done > done_all:
                    done_all = done
                pc += 1
            return done_all, misses_all, stalls

        return serve

    def _serve_banks(self, pc: int, a: int, k: int, nbytes: int, s: int,
                     stalled: bool) -> tuple[int, int, int]:
        """One share of ``k`` > 1 granules (local granules ``[a, a+k)``, ``nbytes`` once
        trimmed to bursts) on pseudo-channel ``pc``: updates its state; returns (end,
        activations, refresh stalls). Scalars, with the banks of the one pseudo-channel as
        small numpy rows (the arithmetic of :meth:`_serve_shares` for one share)."""
        B, refi, rcd, cl, rp, tact = self._B, self._refi, self._rcd, self._cl, self._rp, self._act
        rb, a_rel = divmod(a, self._group)
        p = self._patterns(a_rel, k)            # kind 0: local granules [a_rel, a_rel + k)
        first_rows, last_rows, offsets = p.rows0
        touched, if_new, always = p.flags0
        b0, r0, pairs, row_cycle, nbanks, max_offset, last_is_r0 = p.scalars
        r0 += rb
        bus_free, act_free, epoch, open_flat, act_flat, pc_busy = self._mv
        opens, acts = self._open_row[pc], self._act_at[pc]
        busy = bus_free[pc]
        begin = busy if busy > s else s         # when this share has the pseudo-channel
        begin_epoch = begin // refi
        i0 = pc * B + b0
        if begin_epoch > epoch[pc]:             # refreshed since last use: banks precharged
            opens[...] = -1
            misses = pairs
            same = None
            open0 = -1
        else:
            # Rows: a bank's first row is a hit when open; every other row visited is a miss.
            same = opens == (first_rows + rb if rb else first_rows)
            misses = pairs - int(np.count_nonzero(same))
            open0 = open_flat[i0]
        # First data.
        if open0 == r0:
            act = None
            t = act_flat[i0] + rcd
            ready = self._stretch(self._unblock(t if t > s else s), cl)
            slot = max(s + rp, act_free[pc])
        else:
            if open0 >= 0:
                t = act_flat[i0] + self._ras
                t = (t if t > s else s) + rp
            else:
                t = s
            af = act_free[pc]
            act = self._unblock(af if af > t else t)
            ready = self._stretch(act, rcd + cl)
            slot = act + tact
        start = self._unblock(ready if ready > busy else busy)
        work = -(-nbytes * SEC // self._bw)
        rest = misses - (act is not None)
        if rest:                                # activation-rate and row-cycle bounds
            last_act = max(slot + (rest - 1) * tact, (s if act is None else act) + row_cycle)
            work = max(work, last_act + rcd + cl + min(self._xg, work) - start)
        done = self._stretch(start, work)
        # Activation times: data-aligned estimates (a row opens tRCD + tCL before its data),
        # exact for the first access.
        if misses:
            t = offsets + (start - rcd - cl)
            np.maximum(t, s, out=t)
            if same is None:
                changed = touched
            else:
                changed = np.greater(if_new, same)
                changed |= always
            np.copyto(acts, t, where=changed)
            if act is not None and last_is_r0:
                act_flat[i0] = act
            if rest:
                act_free[pc] = max(last_act, start - rcd - cl + max_offset) + tact
            else:
                act_free[pc] = slot
        if p.touched_all[0]:                    # open-page policy: last rows stay open
            np.add(last_rows, rb, out=opens)
        else:
            np.copyto(opens, last_rows + rb, where=touched)
        done_epoch = (done - 1) // refi
        windows = done_epoch - begin_epoch
        if windows:                             # rows reopened after each refresh in the share
            misses += min(windows * nbanks, nbytes // self._bb - misses)
        epoch[pc] = done_epoch
        bus_free[pc] = done
        pc_busy[pc] += done - start
        return done, misses, 1 if windows or stalled else 0
