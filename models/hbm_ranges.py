"""Range decompositions of the HBM service model (:class:`models.hbm_timing.HbmArray`): how a
burst range splits into per-pseudo-channel shares, as cached numpy arrays.

* :class:`_Patterns`: the row patterns of the (up to four) kinds of share of one range;
* :class:`_Shares`: the decomposition of a range over every pseudo-channel;
* :class:`_RangeCache`: the methods building and caching them (mixed into ``HbmArray``).

All are pure functions of (geometry, timing) and the range's (offset mod one row group of
every pseudo-channel, length): the caches (``_CACHES``) are shared by every array with the same
geometry and timing, bounded by ``HbmArray.CACHE_ENTRIES``, ``PATTERN_ENTRIES`` and
``LAYOUT_ENTRIES``. The numpy pass that consumes them is in :mod:`models.hbm_vector`.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from vp.spec.units import transfer_ps

_I64 = np.int64
#: First/last row of a bank a share does not touch: never equal to an open row (>= -1).
_UNTOUCHED = -(1 << 40)


class _Shares:
    """The decomposition of a burst range of at least one granule per pseudo-channel into its
    ``m`` shares (:mod:`models.hbm_timing`), as numpy arrays indexed by pseudo-channel. Rows are
    relative to the range's row group: the mapping repeats one row higher every ``period``
    bytes, so a decomposition is a function of (offset mod period, length) and is cached.
    Per-share fields are Python ints and per-bank fields (1, banks) rows when every share has
    the same pattern (aligned ranges).
    """

    __slots__ = ("m", "b0flat", "r0", "first_rows", "last_rows", "offsets", "touched",
                 "update_if_new", "update_always", "update_all", "pairs", "pairs_total",
                 "row_cycle", "nbanks", "max_offset", "last_is_r0", "work", "first_work",
                 "bursts", "bursts_total")


class _Patterns:
    """Row patterns of the (up to four) kinds of share of one range: local granules
    ``[a, a+k)`` for ``a`` in (A, A+1) and ``k`` in (q, q+1), kind ``c = 2 * (a - A) + k - q``.
    ``rows`` (3 x kind x banks): first row (``_UNTOUCHED`` where the share misses the bank),
    last row, data offset (ps) of the last row's first granule. ``flags`` (3 x kind x banks):
    touched; activation time rewritten only on a new first row; always rewritten (the bank
    visits several rows). ``fields`` (9 x kind): bank of ``a``, row of ``a``, (bank, row)
    pairs, longest row chain x tRC, banks touched, latest offset, data time of ``k`` granules,
    of the first granule, bursts. ``last_is_r0`` (kind): the first bank's last row is
    ``a``'s row. ``touched_all`` / ``always_all`` / ``always_any``: per kind, over banks.
    ``rows0`` / ``flags0`` / ``scalars``: kind 0's rows, flags and first six fields (+
    ``last_is_r0``) unpacked, for the paths serving one share."""

    __slots__ = ("rows", "flags", "fields", "last_is_r0", "touched_all", "always_all",
                 "always_any", "aligned", "rows0", "flags0", "scalars")


#: (geometry, timing) -> (decompositions, row patterns, share layouts): pure functions of their
#: keys, bounded in size (see ``HbmArray.CACHE_ENTRIES``, ``LAYOUT_ENTRIES``).
_CACHES: dict[tuple, tuple[OrderedDict, dict, OrderedDict]] = {}


class _RangeCache:
    """Mixin of ``HbmArray``: row patterns, share layouts and decompositions of burst ranges,
    cached. Reads the constants ``HbmArray.__init__`` sets (``_n``, ``_B``, ``_g``, ``_bb``,
    ``_group``, ``_period``, ``_xg``, ``_bw``, ``_ras``, ``_rp``, ``_arB``) and its cache
    dicts (``_cache``, ``_pattern_cache``, ``_layout_cache``, from ``_CACHES``)."""

    def _patterns(self, a: int, q: int) -> _Patterns:
        """Row patterns of shares ``[a + x, a + x + q + y)`` for x, y in (0, 1) (cached)."""
        key = (a, q)
        p = self._pattern_cache.get(key)
        if p is not None:
            return p
        B, g, group, xg = self._B, self._g, self._group, self._xg
        a_ = np.array([a, a, a + 1, a + 1], _I64)
        k_ = np.array([q, q + 1, q, q + 1], _I64)
        A, L, K = a_[:, None], (a_ + k_ - 1)[:, None], k_[:, None]
        bank = np.arange(B)
        touched = (K >= B) | ((bank - A) % B < K)
        first_rows = (A + (bank - A) % B) // group
        last_rows = (L - (L - bank) % B) // group
        row_start = np.maximum(A, last_rows * group)
        offsets = (row_start + (bank - row_start) % B - A) * xg
        rows = np.where(touched, last_rows - first_rows, 0)
        several = (rows > 0) & touched
        b0, r0 = a_ % B, a_ // group
        work = np.array([transfer_ps(int(k) * g, self._bw) for k in k_], _I64)
        p = _Patterns()
        p.rows = np.stack([np.where(touched, first_rows, _UNTOUCHED), last_rows, offsets])
        p.flags = np.stack([touched, touched & ~several, several])
        p.fields = np.stack([b0, r0, (rows + touched).sum(axis=1),
                             rows.max(axis=1) * (self._ras + self._rp), np.minimum(k_, B),
                             np.where(touched, offsets, -1).max(axis=1), work,
                             np.minimum(work, xg), k_ * g // self._bb]).astype(_I64)
        p.last_is_r0 = last_rows[np.arange(4), b0] == r0
        p.touched_all = touched.all(axis=1).tolist()
        p.always_all = several.all(axis=1).tolist()
        p.always_any = several.any(axis=1).tolist()
        p.aligned = None                        # decomposition of q granules on every pc
        p.rows0, p.flags0 = tuple(p.rows[:, 0]), tuple(p.flags[:, 0])
        p.scalars = p.fields[:6, 0].tolist() + [bool(p.last_is_r0[0])]   # kind 0, as ints
        if len(self._pattern_cache) >= self.PATTERN_ENTRIES:
            self._pattern_cache.clear()
        self._pattern_cache[key] = p
        return p

    def _shares(self, lo_rel: int, nbytes: int) -> _Shares:
        """Decomposition of the burst range ``[lo_rel, lo_rel + nbytes)`` (``lo_rel`` inside
        the first period), rows relative to row 0."""
        n, g, bb = self._n, self._g, self._bb
        lo, hi = lo_rel, lo_rel + nbytes
        first, last = lo // g, (hi - 1) // g
        count = last - first + 1
        f0, A = first % n, first // n
        d = _Shares()
        q, r = divmod(count, n)                 # (count >= n: a share on every pc)
        m = n
        # pcs before f0 start one granule later; shares j < r (from pc f0 on) are longer
        cuts = sorted({0, f0, (f0 + r) % n, n})
        runs = [(x0, x1, (2 if x0 < f0 else 0) + ((x0 - f0) % n < r))
                for x0, x1 in zip(cuts, cuts[1:])]
        pos0, posl = f0, last % n
        p = self._patterns(A, q)
        d.m = m
        kinds = {c for _, _, c in runs}
        touched_all = all(p.touched_all[c] for c in kinds)
        always_all = all(p.always_all[c] for c in kinds)
        always_any = any(p.always_any[c] for c in kinds)
        if len(kinds) == 1:                     # one pattern: per-bank rows broadcast
            c = kinds.pop()
            first_rows, last_rows, offsets = p.rows[:, c, None]
            touched, if_new, always = p.flags[:, c, None]
            (b0, r0, pairs, row_cycle, nbanks, max_offset, work, first_work,
             bursts) = p.fields[:, c].tolist()
            d.b0flat = self._arB[:m] + b0
            d.last_is_r0 = bool(p.last_is_r0[c])
            d.pairs_total = pairs * m
            if lo - first * g or (last + 1) * g - hi:
                work, first_work, bursts = (np.full(m, x, _I64)
                                            for x in (work, first_work, bursts))
        else:
            # The kinds of shares in pseudo-channel order are a rotation by f0 of a layout
            # that depends on r only: views into per-(A, q, r) arrays laid out twice over.
            rows, flags, fields, last_is_r0, _ = self._layout(p, A, q, r)
            sl = slice(n - f0, 2 * n - f0)
            if lo - first * g or (last + 1) * g - hi:
                # Trimmed below, and kept in the decomposition cache, which must not hold
                # on to layouts it drops: copies.
                rows, flags, fields = rows[:, sl].copy(), flags[:, sl].copy(), fields[:, sl].copy()
                last_is_r0, sl = last_is_r0[sl].copy(), slice(None)
            first_rows, last_rows, offsets = rows[:, sl]
            touched = if_new = always = None    # (not needed: every bank, same rule)
            if not touched_all or (always_any and not always_all):
                touched, if_new, always = flags[:, sl]
            (b0, r0, pairs, row_cycle, nbanks, max_offset, work, first_work,
             bursts) = fields[:, sl]
            d.b0flat = self._arB[:m] + b0
            d.last_is_r0 = last_is_r0[sl]
            fp = p.fields[2].tolist()
            d.pairs_total = sum(fp[c] * (x1 - x0) for x0, x1, c in runs)
        # The first and the last share lose the bytes outside [lo, hi).
        for pos, cut in ((pos0, lo - first * g), (posl, (last + 1) * g - hi)):
            if cut:
                nb = int(bursts[pos]) * bb - cut
                bursts[pos] = nb // bb
                work[pos] = transfer_ps(nb, self._bw)
                first_work[pos] = min(int(work[pos]), self._xg)
        d.r0, d.pairs, d.row_cycle = r0, pairs, row_cycle
        d.nbanks, d.max_offset = nbanks, max_offset
        d.first_rows, d.last_rows, d.offsets = first_rows, last_rows, offsets
        d.work, d.first_work, d.bursts = work, first_work, bursts
        d.touched = None if touched_all else touched
        d.update_all = always_all
        d.update_always = always if always_any else None
        d.update_if_new = None if not always_any and touched_all else if_new
        d.bursts_total = nbytes // bb
        return d

    def _layout(self, p: _Patterns, A: int, q: int, r: int) -> tuple:
        """Per-share rows, flags, fields and ``last_is_r0`` of the shares of ``q`` or ``q + 1``
        granules from local granule ``A`` (patterns ``p``) for a range whose first
        pseudo-channel is ``f0`` and ``r`` pseudo-channels from it take one more granule, laid
        out over ``2 n`` positions: those of the pseudo-channels are positions
        ``[n - f0, 2 n - f0)`` (kinds ``3 * r, 2 * (n - r), 1 * r, 0 * (n - r)``), and the
        decompositions of whole-granule ranges built on it, by ``f0``. Cached (least recently
        used dropped; ``LAYOUT_ENTRIES``)."""
        key = (A, q, r)
        cache = self._layout_cache
        out = cache.get(key)
        if out is not None:
            cache.move_to_end(key)
            return out
        n = self._n
        ci = np.repeat(np.array([3, 2, 1, 0], np.intp), [r, n - r, r, n - r])
        out = (p.rows.take(ci, axis=1), p.flags.take(ci, axis=1), p.fields.take(ci, axis=1),
               p.last_is_r0.take(ci), {})
        cache[key] = out
        if len(cache) > self.LAYOUT_ENTRIES:
            cache.popitem(last=False)
        return out

    def _decomposition(self, lo: int, hi: int) -> tuple[_Shares, int]:
        """The (cached) decomposition of burst range ``[lo, hi)`` and its row offset."""
        period, span = self._period, self._n * self._g
        R = lo // period                                    # rows above the cached pattern
        lo_rel, nbytes = lo - R * period, hi - lo
        if not (lo_rel % span or nbytes % span):            # whole granules on every pc
            p = self._patterns(lo_rel // span, nbytes // span)
            if p.aligned is None:
                p.aligned = self._shares(lo_rel, nbytes)
            return p.aligned, R
        g = self._g
        if not (lo_rel % g or nbytes % g):                  # whole granules, several kinds
            # of share: kept with their layout (views of it), any number of first pcs
            A, f0 = divmod(lo_rel // g, self._n)
            key = (A, *divmod(nbytes // g, self._n))
            layouts = self._layout_cache
            layout = layouts.get(key)
            d = layout[4].get(f0) if layout is not None else None
            if d is None:
                d = self._shares(lo_rel, nbytes)            # (makes the layout)
                layout = layouts.get(key)
                if layout is not None:
                    layout[4][f0] = d
            else:
                layouts.move_to_end(key)
            return d, R
        key = (lo_rel, nbytes)
        cache = self._cache
        d = cache.get(key)
        if d is None:
            d = cache[key] = self._shares(lo_rel, nbytes)
            if len(cache) > self.CACHE_ENTRIES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return d, R
