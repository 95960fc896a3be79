"""The HBM service model's paths that serve a range one group of pseudo-channels at a time
(:class:`models.hbm_timing.HbmArray`; groups kept by :mod:`models.hbm_groups`):

* :meth:`_Pieces._serve_pieces`: each group's share computed once on scalars
  (:mod:`models.hbm_scalar`) and copied over the group;
* :meth:`_Pieces._serve_cold`: a range over every pseudo-channel when all are cold (refreshed
  since their last use): one share per timing group, bank writes queued (``_banks_due``) and
  applied by :meth:`_Pieces._write_banks` when something reads the banks.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from vp.spec.units import SEC


class _Pieces:
    """Mixin of ``HbmArray``: serving by groups. Reads the constants and state ``HbmArray``
    sets up, the groups (``_cuts`` / ``_tcuts``, :mod:`models.hbm_groups`), the row patterns
    (:mod:`models.hbm_ranges`) and the scalar servers (:mod:`models.hbm_scalar`)."""

    def _write_banks(self) -> None:
        """Apply the bank writes of cold shares (:meth:`_serve_cold`), in order: per piece of
        pseudo-channels, the rows it leaves open and their activation times."""
        opens, acts = self._open_row, self._act_at
        for x0, x1, p, rb, base, s, act in self._banks_due:
            _, last_rows, offsets = p.rows0
            t = np.add(offsets, base)
            np.maximum(t, s, out=t)
            rows = last_rows + rb if rb else last_rows
            if p.touched_all[0]:
                acts[x0:x1] = t
                opens[x0:x1] = rows
            else:
                touched = p.flags0[0]
                np.copyto(acts[x0:x1], t, where=touched)
                opens[x0:x1] = np.where(touched, rows, -1)
            if act is not None:
                acts[x0:x1, p.scalars[0]] = act
        self._banks_due = []

    def _serve_cold(self, runs: list[tuple], s: int, arrival: int) -> int | None:
        """Serve a range over every pseudo-channel when every one is cold (refreshed since its
        last use, so every bank is closed and the open rows do not matter): one share
        computed on scalars per piece of pseudo-channels in the same timing state
        (``_tcuts``) with the same share (``runs``), written over the piece; the bank writes
        are queued (``_banks_due``) until something reads the banks. The arithmetic of
        :meth:`_serve_banks` for a cold pseudo-channel. None (nothing done) when a piece is
        not cold or there are more than ``COLD_PIECES`` pieces."""
        tcuts, refi, n = self._tcuts, self._refi, self._n
        bus_free, act_free, epoch, _, _, pc_busy = self._mv
        pieces = []
        for x0, x1, a, k, nbytes in runs:
            i = bisect_right(tcuts, x0)
            while True:
                x = tcuts[i] if i < len(tcuts) and tcuts[i] < x1 else x1
                busy = bus_free[x0]
                if (busy if busy > s else s) // refi <= epoch[x0]:
                    return None                 # not refreshed since its last use
                pieces.append((x0, x, a, k, nbytes))
                if x == x1:
                    break
                x0, i = x, i + 1
        if len(pieces) > self.COLD_PIECES:
            return None
        rcd, cl, tact, xg, bw, bb = self._rcd, self._cl, self._act, self._xg, self._bw, self._bb
        rfc, avail, group = self._rfc, self._avail, self._group
        patterns, pattern = self._pattern_cache, self._patterns
        stalled = s != arrival
        done_all = misses_all = stalls_all = 0
        due, supersede, states = [], True, []
        for x0, x1, a, k, nbytes in pieces:
            rb, a_rel = divmod(a, group)
            p = patterns.get((a_rel, k)) or pattern(a_rel, k)   # kind 0: [a_rel, a_rel + k)
            _, _, pairs, row_cycle, nbanks, max_offset, last_is_r0 = p.scalars
            busy, af = bus_free[x0], act_free[x0]
            begin_epoch = (busy if busy > s else s) // refi
            # First data: every bank closed, so activate (no precharge) when allowed. Times
            # inside a refresh window wait for its end; activity is stretched by each window.
            act = af if af > s else s
            e = act // refi
            if e and act - e * refi < rfc:
                act = e * refi + rfc
            over = act % refi + rcd + cl - refi
            ready = act + rcd + cl + (-(-over // avail) * rfc if over > 0 else 0)
            slot = act + tact
            start = ready if ready > busy else busy
            e = start // refi
            if e and start - e * refi < rfc:
                start = e * refi + rfc
            work = -(-nbytes * SEC // bw)
            rest = pairs - 1
            if rest:                            # activation-rate and row-cycle bounds
                last_act = slot + (rest - 1) * tact
                if act + row_cycle > last_act:
                    last_act = act + row_cycle
                bound = last_act + rcd + cl + (xg if xg < work else work) - start
                if bound > work:
                    work = bound
                new_af = start - rcd - cl + max_offset
                new_af = (new_af if new_af > last_act else last_act) + tact
            else:
                new_af = slot
            over = start % refi + work - refi
            done = start + work + (-(-over // avail) * rfc if over > 0 else 0)
            supersede = supersede and p.touched_all[0]
            due.append((x0, x1, p, rb, start - rcd - cl, s, act if last_is_r0 else None))
            done_epoch = (done - 1) // refi
            states.append((done, done_epoch, new_af, due[-1][2:]))
            windows = done_epoch - begin_epoch
            misses = pairs
            if windows:                         # rows reopened after each refresh in the share
                misses += min(windows * nbanks, nbytes // bb - misses)
            size = x1 - x0
            if size == 1:
                bus_free[x0], epoch[x0], act_free[x0] = done, done_epoch, new_af
                pc_busy[x0] += done - start
            elif size == n:
                self.bus_free.fill(done)
                self.epoch.fill(done_epoch)
                self.act_free.fill(new_af)
                self._busy_all += done - start
            else:
                self.bus_free[x0:x1] = done
                self.epoch[x0:x1] = done_epoch
                self.act_free[x0:x1] = new_af
                self.pc_busy_ps[x0:x1] += done - start
            misses_all += misses * size
            if windows or stalled:
                stalls_all += size
            if done > done_all:
                done_all = done
        if supersede:                           # every bank of every pc written again
            self._banks_due = due
        else:
            self._banks_due += due
        self.activations += misses_all
        self.row_misses += misses_all
        self.row_hits -= misses_all
        self.refresh_stalls += stalls_all
        self.steps += len(pieces)
        if not supersede and (len(runs) > 1 or runs[0][0] or runs[0][1] != n):
            self._add_cuts([x for run in runs for x in run[:2]])    # (tcuts are in cuts)
        # Every pseudo-channel now has its piece's timing state (and, when every bank was
        # written, its whole state): the groups are where consecutive pieces differ, often
        # fewer than before (e.g. idle pieces served alike).
        tcuts, cuts = [0], [0]
        for piece, before, after in zip(pieces[1:], states, states[1:]):
            if before[:3] != after[:3]:         # (data bus, epoch, activation slot)
                tcuts.append(piece[0])
                cuts.append(piece[0])
            elif before[3] != after[3]:         # (bank writes)
                cuts.append(piece[0])
        self._tcuts = tcuts
        if supersede and self.GROUPS_MAX:
            self._cuts = cuts if len(cuts) <= self.GROUPS_MAX else None
        return done_all

    def _serve_pieces(self, runs: list[tuple], s: int, arrival: int,
                      budget: float) -> int | None:
        """Serve each run one group at a time (one share computed on scalars, copied to the
        group's other pseudo-channels), or None (nothing done) when that would be slower than
        one numpy pass."""
        cuts = self._cuts
        pieces, cost = [], 0
        for x0, x1, a, k, nbytes in runs:
            i = bisect_right(cuts, x0)
            while True:
                x = cuts[i] if i < len(cuts) and cuts[i] < x1 else x1
                pieces.append((x0, x, a, k, nbytes))
                cost += (1.2 if k == 1 else 7) + (x - x0 > 1) * 2.5   # ~us
                if cost > budget:
                    return None
                if x == x1:
                    break
                x0, i = x, i + 1
        stalled = s != arrival
        done_all = misses_all = stalls_all = 0
        mv = self._mv
        for x0, x1, a, k, nbytes in pieces:
            before = mv[5][x0]
            if k == 1:
                done, misses, stall = self._serve_granule(a * self._n + x0, 1, self._g - nbytes,
                                                          0, s, stalled)
            else:
                done, misses, stall = self._serve_banks(x0, a, k, nbytes, s, stalled)
            size = x1 - x0
            if size > 1:                        # the rest of the group: same state, same share
                sl = slice(x0 + 1, x1)
                self.bus_free[sl] = done
                self.epoch[sl] = mv[2][x0]
                self.act_free[sl] = mv[1][x0]
                self._open_row[sl] = self._open_row[x0]
                self._act_at[sl] = self._act_at[x0]
                self.pc_busy_ps[sl] += mv[5][x0] - before
            misses_all += misses * size
            stalls_all += stall * size
            if done > done_all:
                done_all = done
        self.activations += misses_all
        self.row_misses += misses_all
        self.row_hits -= misses_all
        self.refresh_stalls += stalls_all
        self.steps += len(pieces)
        self._add_cuts([x for piece in pieces for x in piece[:2]])
        return done_all
