"""The exact numerics of every compute op of the NPU (docs/design/npu.md §5, DESIGN.md §6).

These functions *are* the definition of the arithmetic. The core models call them on SRAM
tiles in functional mode, and the SDK's numpy reference forward pass calls the same functions
on whole tensors; the two must agree bit for bit. Every function is therefore written so that
the bits of each output element depend only on that element's inputs and never on how many
rows (or, for ``gemm``, rows, columns and ascending K tiles) one call covers:

* Arithmetic is IEEE-754 fp32, round to nearest even, no fused multiply-add, no flush to zero.
  numpy's elementwise ``+ - * /`` and ``sqrt`` on float32 are correctly rounded, so they give
  the same bits whatever the array shape, layout or SIMD path.
* Reductions (row sums for softmax and the norms) never use ``np.sum``: they use
  :func:`row_sum`, a fixed halving tree built only from elementwise adds. (``np.sum`` uses
  pairwise summation whose grouping depends on the memory layout: on this numpy it gives the
  same row sums for any number of C-contiguous rows, but different bits for a Fortran-ordered
  copy of the same matrix, and the grouping is an implementation detail, not a contract.)
* ``max`` is exact in any order. Transcendentals (``exp``, ``tanh``, ``sin``, ``cos``,
  ``power``) are numpy's float32 ufuncs applied to contiguous arrays; they are elementwise,
  and the tests check that each element gets the same bits in any position, alone or strided.
  Caveat: their last-ulp behaviour belongs to the numpy build and CPU (SIMD level), so golden
  *files* compared across machines need a tolerance; within one installation VP and SDK agree.

Data types: fp32 is ``numpy.float32``; bf16 travels as its bit pattern in ``numpy.uint16``;
int8 is ``numpy.int8``. Codes match the core-instruction ``dtype`` fields: FP32=0, BF16=1,
INT8=2. Elementwise ops take fp32 arrays only (other array dtypes raise ``TypeError``, so a bf16
bit pattern can never be mistaken for a number); Python scalars and lists are converted with
``numpy.float32``. No function modifies its inputs; all return new C-contiguous arrays.

This module is part of the hardware/software contract (``vp.spec``): stdlib and numpy only.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np

__all__ = [
    "FP32", "BF16", "INT8", "STORAGE_DTYPE",
    "to_bf16", "from_bf16", "convert",
    "gemm", "add", "mul", "scale", "gelu", "silu", "softmax", "row_sum",
    "layernorm", "rmsnorm", "rope_inv_freq", "rope", "embed",
]

F32 = np.float32

#: dtype codes of the GEMM / CONVERT instructions.
FP32, BF16, INT8 = 0, 1, 2
#: numpy storage dtype of each code (bf16 is stored as its 16-bit pattern).
STORAGE_DTYPE = {FP32: np.dtype(np.float32), BF16: np.dtype(np.uint16), INT8: np.dtype(np.int8)}
_DTYPE_NAMES = {"fp32": FP32, "float32": FP32, "bf16": BF16, "bfloat16": BF16, "int8": INT8}

#: GELU constants, rounded once from float64 to fp32.
GELU_SQRT_2_OVER_PI = F32(math.sqrt(2.0 / math.pi))   # 0x3F4C422A = 0.7978845834732056
GELU_CUBIC = F32(0.044715)                             # 0x3D372713

#: Products per block of the loop path's staging buffer (1 MiB). It changes speed only, never bits.
_GEMM_STAGE_ELEMENTS = 1 << 18


def _c(x: np.ndarray) -> np.ndarray:
    """x itself if C-contiguous, else a C-contiguous copy (keeps 0-d arrays 0-d)."""
    return x if x.flags.c_contiguous else np.array(x, order="C")


def _f32(x, op: str) -> np.ndarray:
    """An fp32 operand as a C-contiguous float32 array (never a copy we then write into)."""
    if isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            raise TypeError(f"{op}: expected a float32 array, got {x.dtype} "
                            f"(bf16 bit patterns: use from_bf16 or convert first)")
        return _c(x)
    return _c(np.asarray(x, dtype=np.float32))


def _dtype_code(d) -> int:
    if isinstance(d, str) and d.lower() in _DTYPE_NAMES:
        return _DTYPE_NAMES[d.lower()]
    if d in STORAGE_DTYPE and not isinstance(d, bool):
        return int(d)
    raise ValueError(f"unknown dtype {d!r} (expected 0=FP32, 1=BF16, 2=INT8 or "
                     f"'fp32', 'bf16', 'int8')")


# ----------------------------------------------------------------------------------- bf16

def to_bf16(x) -> np.ndarray:
    """fp32 -> bf16 bit patterns (uint16), round to nearest, ties to even.

    Numerics on the fp32 bit pattern ``b`` (a uint32):
    ``bf16 = (b + 0x7FFF + ((b >> 16) & 1)) >> 16``. This rounds subnormals like any other
    value (no flush to zero) and overflows to ±inf exactly when RNE says so. NaN keeps its
    sign and top payload bits and gets the quiet bit: ``(b >> 16) | 0x0040``.
    """
    x = _f32(x, "to_bf16")
    bits = x.reshape(-1).view(np.uint32).astype(np.uint64)  # uint64: no wrap for NaN patterns
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    quiet_nan = (bits >> 16) | 0x0040
    out = np.where(np.isnan(x.reshape(-1)), quiet_nan, rounded).astype(np.uint16)
    return out.reshape(x.shape)


def from_bf16(u) -> np.ndarray:
    """bf16 bit patterns (uint16) -> fp32 (exact: the pattern becomes the top 16 bits)."""
    u = np.asarray(u)
    if u.dtype != np.uint16:
        raise TypeError(f"from_bf16: expected uint16 bf16 bit patterns, got {u.dtype}")
    return (_c(u).astype(np.uint32) << 16).view(np.float32)


def convert(x, from_dtype, to_dtype, scale=1.0) -> np.ndarray:
    """The CONVERT instruction: ``from_dtype`` -> ``to_dtype`` (codes or names).

    * fp32 -> bf16: :func:`to_bf16` (``scale`` ignored).
    * bf16 -> fp32: :func:`from_bf16`, exact (``scale`` ignored).
    * fp32 -> int8: ``q = x / scale`` (one fp32 divide), round half to even (``rint``),
      saturate to [-127, 127] (so ±inf saturate; -128 is never produced), NaN -> 0.
    * int8 -> fp32: ``float32(q) * scale`` (exact conversion, one fp32 multiply).
    * same dtype: a copy. Anything else (bf16 <-> int8) raises ``ValueError``: go via fp32.
    """
    src, dst = _dtype_code(from_dtype), _dtype_code(to_dtype)
    x = np.asarray(x)
    if x.dtype != STORAGE_DTYPE[src]:
        raise TypeError(f"convert: a {('fp32', 'bf16', 'int8')[src]} operand must be stored "
                        f"as {STORAGE_DTYPE[src]}, got {x.dtype}")
    s = F32(scale)
    if src == dst:
        return np.array(x, order="C", copy=True)
    if (src, dst) == (FP32, BF16):
        return to_bf16(x)
    if (src, dst) == (BF16, FP32):
        return from_bf16(x)
    if (src, dst) == (FP32, INT8):
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            q = np.rint(_c(x) / s)                       # fp32 divide, ties to even
        q = np.clip(q, F32(-127), F32(127))
        q[np.isnan(q)] = 0
        return q.astype(np.int8)
    if (src, dst) == (INT8, FP32):
        return _c(x).astype(np.float32) * s
    raise ValueError(f"convert: {from_dtype!r} -> {to_dtype!r} is not an instruction "
                     f"(convert through fp32)")


# ----------------------------------------------------------------------------------- gemm

def _gemm_operand(x, name: str) -> np.ndarray:
    """A GEMM operand as fp32: float32 as is, bf16 (uint16) and int8 (B only) exactly."""
    x = np.asarray(x)
    if x.dtype == np.float32:
        return x
    if x.dtype == np.uint16:
        return from_bf16(x)
    if x.dtype == np.int8 and name == "b":
        return x.astype(np.float32)
    raise TypeError(f"gemm: operand {name} has dtype {x.dtype}; expected float32, uint16 "
                    f"(bf16 bits){' or int8 (weight-only)' if name == 'b' else ''}")


def gemm(a, b, c=None, *, trans_a=False, trans_b=False, b_scale=None) -> np.ndarray:
    """C = A·B (+ c), the numerics of a weight-stationary systolic array.

    Shapes: A is (M, K), or (K, M) with ``trans_a``; B is (K, N), or (N, K) with ``trans_b``;
    ``c`` (M, N) fp32; ``b_scale`` (N,) fp32; result (M, N) fp32, a new array.

    Operands: fp32; bf16 as uint16 bit patterns (A or B); int8 (B only, weight-only). bf16 and
    int8 are first converted to fp32, which is exact.

    Exact numerics, per output element (m, n)::

        acc = c[m, n] if c is given else +0.0
        for k in 0, 1, ..., K-1:                       # ascending k
            p   = fp32(A[m, k] * B[k, n])              # product rounded to fp32
            acc = fp32(acc + p)                        # sum rounded to fp32 (no FMA)
        out[m, n] = fp32(acc * b_scale[n]) if b_scale is given else acc

    Tiling: the chain of an element never involves another row or column, so any split of M
    and N gives the same bits. A split of K gives the same bits when the caller runs the K
    tiles in ascending order, passing the previous result as ``c``, and passes ``b_scale``
    *only on the last tile* (the int8 scale multiplies the finished fp32 sum once; for an
    int8 B without ``b_scale`` the result is the unscaled sum over the integer weights).
    For bf16 × bf16 the product is exact in fp32 (8-bit × 8-bit significands); the chain is
    the same.
    """
    a32, b32 = _gemm_operand(a, "a"), _gemm_operand(b, "b")
    if a32.ndim != 2 or b32.ndim != 2:
        raise ValueError(f"gemm: A and B must be 2-D, got {a32.shape} and {b32.shape}")
    a_km = _c(a32 if trans_a else a32.T)                      # (K, M): row k = column k of A
    b_kn = _c(b32.T if trans_b else b32)                      # (K, N): row k of B
    (K, M), (Kb, N) = a_km.shape, b_kn.shape
    if K != Kb:
        raise ValueError(f"gemm: inner dimensions differ: A has K={K}, B has K={Kb}")

    if c is None:
        acc = np.zeros((M, N), dtype=np.float32)                # (M, N)
    else:
        acc = np.array(_f32(c, "gemm c"), order="C", copy=True)
        if acc.shape != (M, N):
            raise ValueError(f"gemm: c has shape {acc.shape}, expected {(M, N)}")

    with np.errstate(over="ignore", invalid="ignore"):
        if K and acc.size:
            (_chain_reduce if _REDUCE_IS_SEQUENTIAL else _chain_loop)(acc, a_km, b_kn)
        if b_scale is not None:
            s = _f32(b_scale, "gemm b_scale").reshape(-1)
            if s.shape != (N,):
                raise ValueError(f"gemm: b_scale has {s.size} values, expected N={N}")
            np.multiply(acc, s[None, :], out=acc)
    return acc


def _chain_loop(acc: np.ndarray, a_km: np.ndarray, b_kn: np.ndarray) -> None:
    """acc += A·B as the k-ascending chain: products of a block of consecutive k in one call
    (speed only), then added into acc one k at a time, exactly as the definition says. The
    reference implementation, and the fallback when :data:`_REDUCE_IS_SEQUENTIAL` is false."""
    (K, M), N = a_km.shape, b_kn.shape[1]
    block = max(1, min(K, _GEMM_STAGE_ELEMENTS // max(1, M * N)))
    products = np.empty((block, M, N), dtype=np.float32)        # (block, M, N)
    for k0 in range(0, K, block):
        k1 = min(K, k0 + block)
        p = products[:k1 - k0]
        _products(p, a_km[k0:k1], b_kn[k0:k1])
        for p_k in p:
            np.add(acc, p_k, out=acc)


def _chain_reduce(acc: np.ndarray, a_km: np.ndarray, b_kn: np.ndarray) -> None:
    """The same chain with one ``np.add.reduce`` over axis 0 per block of k: row 0 holds acc,
    rows 1.. the products. Reducing the outer (non-contiguous) axis of a C-contiguous array,
    numpy adds whole rows in order to its initial value -0.0 (``-0.0 + x == x`` for every x,
    signed zeros and NaN included), i.e. exactly the chain; :data:`_REDUCE_IS_SEQUENTIAL`
    checks that at import on cases where any other grouping gives other bits. One numpy call
    per block instead of one per k: faster than the loop on every shape measured (M = 1..8,
    N = 12..50257).

    Tiles of fewer than :data:`_REDUCE_MIN_LANES` lanes (M·N) get zero columns appended, so
    the lane axis is never one numpy could fold away and reduce k as the contiguous inner
    loop (pairwise summation). The padded lanes add zeros and are dropped at the end."""
    (K, M), N = a_km.shape, b_kn.shape[1]
    Np = N if M * N >= _REDUCE_MIN_LANES else -(-_REDUCE_MIN_LANES // M)   # padded columns
    block = max(1, min(K, _REDUCE_STAGE_ELEMENTS // (M * Np)))
    if Np == N:
        out = acc
        staged = np.empty((block + 1, M, N), dtype=np.float32)  # (1 + block, M, N)
    else:
        out = np.zeros((M, Np), dtype=np.float32)               # (M, Np)
        out[:, :N] = acc
        staged = np.zeros((block + 1, M, Np), dtype=np.float32)
    for k0 in range(0, K, block):
        k1 = min(K, k0 + block)
        staged[0] = out
        _products(staged[1:k1 - k0 + 1, :, :N], a_km[k0:k1], b_kn[k0:k1])
        # initial=-0.0: numpy would otherwise start from +0.0, and +0 + acc loses acc = -0.
        np.add.reduce(staged[:k1 - k0 + 1], axis=0, out=out, initial=_NEG_ZERO)
    if out is not acc:
        acc[...] = out[:, :N]


def _products(out: np.ndarray, a_km: np.ndarray, b_kn: np.ndarray) -> None:
    """out[k, m, n] = fp32(a_km[k, m] * b_kn[k, n]): one correctly rounded multiply each."""
    M, N = a_km.shape[1], b_kn.shape[1]
    if N < (_UNBUFFERED_MIN_N if M == 1 else _UNBUFFERED_MIN_N_MULTIROW):
        if out.size < 1 << 14:
            np.multiply(a_km[:, :, None], b_kn[:, None, :], out=out)
        else:
            # Speed only (~10% on short rows): spread a over out, then multiply in place by b;
            # still fp32(a * b), a first as above.
            np.copyto(out, a_km[:, :, None])
            np.multiply(out, b_kn[:, None, :], out=out)
        return
    # Speed only: with its default buffer numpy copies the broadcast operands into buffers
    # spanning several rows (~0.1 ns an element); a 16-element buffer makes it run one
    # unbuffered inner loop per row instead, cheaper for long rows. Same products either way.
    old = np.setbufsize(16)
    try:
        np.multiply(a_km[:, :, None], b_kn[:, None, :], out=out)
    finally:
        np.setbufsize(old)


_NEG_ZERO = F32(-0.0)
#: Products per staged block of the reduce path (4 MiB). Big blocks amortise numpy's per-call
#: setup; 2^20 was fastest on the e2e shapes (2^16 took up to 2x longer). Speed only.
_REDUCE_STAGE_ELEMENTS = 1 << 20
#: Fewest lanes (M·N) the reduce path works on; narrower tiles are padded with zero columns.
_REDUCE_MIN_LANES = 16
#: Row length N from which the products are computed unbuffered (see _products), for M = 1
#: and for M > 1 (where numpy buffers both broadcast operands). Speed only.
_UNBUFFERED_MIN_N, _UNBUFFERED_MIN_N_MULTIROW = 256, 160


def _reduce_is_sequential() -> bool:
    """True when this numpy's axis-0 add.reduce gives the k-ascending chain's bits (checked
    on narrow, padded, wide and multi-row tiles, through both ways of computing products,
    and on signed zeros)."""
    rng = np.random.default_rng(7)
    for M, N, K in ((1, 16, 300), (3, 17, 513), (16, 255, 70), (1, 3, 200), (2, 5, 40),
                    (1, 300, 40), (4, 200, 30), (1, 9000, 9)):
        a_km = rng.standard_normal((K, M)).astype(np.float32) * np.float32(1e4)
        b_kn = rng.standard_normal((K, N)).astype(np.float32)
        b_kn[::7] *= np.float32(1e-4)                 # mixed magnitudes: grouping shows
        loop = np.zeros((M, N), np.float32)
        red = np.zeros((M, N), np.float32)
        _chain_loop(loop, a_km, b_kn)
        _chain_reduce(red, a_km, b_kn)
        if not np.array_equal(loop.view(np.uint32), red.view(np.uint32)):
            return False
    # Signed zeros: acc = -0 plus -0 products stays -0 (a reduction starting at +0 gives +0).
    red = np.full((1, 16), -0.0, np.float32)
    _chain_reduce(red, np.full((3, 1), -0.0, np.float32), np.ones((3, 16), np.float32))
    return bool(np.signbit(red).all())


_REDUCE_IS_SEQUENTIAL = _reduce_is_sequential()


# ---------------------------------------------------------------------------- elementwise

def add(a, b) -> np.ndarray:
    """``fp32(a + b)`` elementwise (numpy broadcasting allowed)."""
    return np.add(_f32(a, "add"), _f32(b, "add"), order="C")


def mul(a, b) -> np.ndarray:
    """``fp32(a * b)`` elementwise (numpy broadcasting allowed)."""
    return np.multiply(_f32(a, "mul"), _f32(b, "mul"), order="C")


def scale(a, factor) -> np.ndarray:
    """``fp32(a * float32(factor))`` elementwise."""
    return np.multiply(_f32(a, "scale"), F32(factor), order="C")


def gelu(x) -> np.ndarray:
    """GPT-2's tanh GELU, in fp32, with this exact operation order (each step rounded)::

        x3 = (x * x) * x
        u  = GELU_SQRT_2_OVER_PI * (x + GELU_CUBIC * x3)
        y  = (0.5 * x) * (1 + tanh(u))          # tanh = numpy float32 tanh

    GELU_SQRT_2_OVER_PI = fp32(sqrt(2/pi)), GELU_CUBIC = fp32(0.044715). Left to right as in
    Hugging Face ``NewGELUActivation`` (``pow(x, 3)`` is written as ``(x*x)*x``).
    """
    x = _f32(x, "gelu")
    with np.errstate(over="ignore", invalid="ignore"):
        x3 = (x * x) * x
        u = GELU_SQRT_2_OVER_PI * (x + GELU_CUBIC * x3)
        return (F32(0.5) * x) * (F32(1.0) + np.tanh(u))


_erfc = np.frompyfunc(math.erfc, 1, 1)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def gelu_erf(x) -> np.ndarray:
    """Exact (erf) GELU, as BERT's ``hidden_act="gelu"`` (torch ``F.gelu``), fp32 in and out.
    Each fp32 ``x`` is widened exactly to float64 and::

        y = float32( (0.5 * x) * erfc(-(x * (1/sqrt(2)))) )       # float64, left to right

    ``erfc(-z) = 1 + erf(z)`` without the cancellation of ``1 + erf`` for negative x;
    ``erfc`` is the C library's double erfc (``math.erfc``), the one final rounding is to
    nearest-even fp32. Elementwise, so a value's bits never depend on its position; correctly
    rounded except within ~2^-50 of an fp32 tie (C libraries agree on all but ~1 in 2^25
    inputs). About 0.1 µs per element.
    """
    x = _f32(x, "gelu_erf")
    x64 = x.astype(np.float64)
    c = _erfc(-(x64 * _INV_SQRT2)).astype(np.float64) if x.size else x64
    return np.ascontiguousarray(((0.5 * x64) * c).astype(np.float32))


def silu(x) -> np.ndarray:
    """``y = x * (1 / (1 + exp(-x)))`` in fp32, each step rounded; exp = numpy float32 exp.

    For x < -88.7, exp(-x) overflows to inf and sigmoid is exactly 0 (y = -0.0).
    """
    x = _f32(x, "silu")
    with np.errstate(over="ignore"):
        sigmoid = F32(1.0) / (F32(1.0) + np.exp(-x))
    return x * sigmoid


# ----------------------------------------------------------------------------- reductions

def row_sum(x) -> np.ndarray:
    """Deterministic fp32 sum over the last axis: a halving tree of elementwise adds.

    x (..., C) -> (...). For a row ``v`` of length n, repeat while n > 1::

        h = n // 2
        v = [v[i] + v[n - h + i] for i in 0..h-1] + ([v[h]] if n is odd else [])
        n = n - h

    i.e. the upper half is folded onto the lower half (an odd middle element passes through)
    until one value is left. Every step is an elementwise fp32 add, so a row's sum depends
    only on the row, never on how many rows are summed together or their memory layout. The
    error grows like log2(n) ulps, not n. An empty row sums to +0.0.
    """
    x = _f32(x, "row_sum")
    lead, n = x.shape[:-1], x.shape[-1]
    if n == 0:
        return np.zeros(lead, dtype=np.float32)
    return _tree_sum(x.reshape(-1, n)).reshape(lead)


def _tree_sum(rows: np.ndarray, square: bool = False) -> np.ndarray:
    """row_sum of an (R, n) fp32 array (n >= 1), or with ``square`` of its elementwise square
    ``rows * rows``, as a new (R,) array.

    The rows are copied as the columns of a working buffer v (n, R), which is folded in place:
    after a step the rows are v[:n - h] (the h sums, then the odd middle element, which
    already sits at row h). The two halves of an add never overlap (n - h >= h), so each step
    is the same elementwise add as in the docstring of row_sum. (Transposed so that each
    half is one contiguous block: faster than folding strided columns.)"""
    buf, folds = _tree_plan(*rows.shape)
    if square:
        np.multiply(rows.T, rows.T, out=buf)
    else:
        np.copyto(buf, rows.T)
    for low, high in folds:
        np.add(low, high, out=low)
    return buf[0].copy()


_TREE_PLANS = threading.local()
_TREE_PLAN_MAX_ELEMENTS = 1 << 16


def _tree_plan(R: int, n: int):
    """(buffer (n, R), [(low half, high half) of each step]) for row sums of R rows of n.

    Speed only: creating the slice views costs about as much as the small adds themselves, so
    each thread keeps the buffer and views of small shapes (at most 64 shapes of <= 256 KiB;
    larger ones are built per call)."""
    plans = getattr(_TREE_PLANS, "plans", None)
    if plans is None:
        plans = _TREE_PLANS.plans = {}
    plan = plans.get((R, n))
    if plan is None:
        buf = np.empty((n, R), dtype=np.float32)                # (n, R)
        folds = []
        while n > 1:
            h = n // 2
            folds.append((buf[:h], buf[n - h:n]))
            n -= h
        plan = (buf, folds)
        if buf.size <= _TREE_PLAN_MAX_ELEMENTS:
            if len(plans) >= 64:
                plans.clear()
            plans[(R, buf.shape[0])] = plan
    return plan


def softmax(x, *, scale=1.0, causal=False, pos0=0) -> np.ndarray:
    """Row softmax of x (..., R, C) or (C,), in fp32::

        s = x * float32(scale)
        causal: row r sees columns j <= pos0 + r only; y[r, j] = 0 for the others, and the
                row's max and row_sum run over its visible columns alone
        m = max_j s[r, j]                                (exact)
        e = exp(s - m)                                   (numpy float32 exp)
        y = e / row_sum(e)                               (one fp32 divide per element)

    A causal row therefore equals the plain softmax of its visible prefix bit for bit: a
    prefill block of T query rows gives each row exactly what a decode step over the same
    keys gives (row_sum's grouping depends on the row length, so masked zeros must not take
    part). Rows are independent, so any split of R gives the same bits if a part starting at
    row r0 is called with ``pos0 + r0``. Columns are not split (the row must be whole).
    Leading axes (e.g. heads) all use the same row index r. ``pos0`` must be >= 0, so every
    causal row keeps at least column 0.
    """
    x = _f32(x, "softmax")
    if x.ndim == 0:
        raise ValueError("softmax: x must have at least one axis")
    if causal and pos0 < 0:
        raise ValueError(f"softmax: pos0 must be >= 0, got {pos0}")
    s = np.multiply(x, F32(scale))                             # (..., R, C), a new array
    if not causal:
        return _softmax_rows(s)
    if s.ndim == 1:
        s = s[None, :]
        return _causal_softmax(s, pos0)[0]
    return _causal_softmax(s, pos0)


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    if s.shape[-1] == 0:
        return s
    m = s.max(axis=-1, keepdims=True)                          # (..., R, 1)
    e = np.exp(np.subtract(s, m, out=s))                       # (..., R, C); s is ours
    sums = _tree_sum(e.reshape(-1, e.shape[-1]))               # (rows,)
    return np.divide(e, sums.reshape(e.shape[:-1] + (1,)), out=e)  # in place: same bits


def _causal_softmax(s: np.ndarray, pos0: int) -> np.ndarray:
    """Row r of s (..., R, C) over its first pos0 + r + 1 columns; zeros after them.

    All rows at once: the hidden columns are set to -inf for the max (exact in any order, so
    the max of the visible prefix), exp runs over whole rows (elementwise: the visible values
    get the bits they get alone), and each row's sum is the row_sum tree of its own prefix
    length (:func:`_prefix_tree_plan`); the divide writes the visible columns only."""
    rows, cols = s.shape[-2], s.shape[-1]
    if pos0 + 1 >= cols or rows == 0:                          # every row sees all columns
        return _softmax_rows(s)
    lead = s.shape[:-2]
    visible, steps, firsts = _prefix_tree_plan(rows, cols, pos0)
    s3 = s.reshape(-1, rows, cols)                             # (L, R, C)
    masked = np.where(visible, s3, F32(-np.inf))               # (L, R, C)
    m = masked.max(axis=-1, keepdims=True)                     # (L, R, 1)
    e = np.exp(np.subtract(masked, m, out=masked))             # (L, R, C)
    v = e.reshape(e.shape[0], -1).T.copy()                     # (R*C, L): one column per head
    for dst, src in steps:
        v[dst] = v[dst] + v[src]
    sums = v[firsts].T.reshape(-1, rows, 1)                    # (L, R, 1)
    out = np.zeros_like(e)
    np.divide(e, sums, out=out, where=visible)
    return out.reshape(lead + (rows, cols))


@functools.lru_cache(maxsize=256)
def _prefix_tree_plan(rows: int, cols: int, pos0: int):
    """For causal rows r of length n_r = min(cols, pos0 + r + 1): the (R, C) visibility mask,
    the row_sum tree steps of all rows as flat (dst, src) index arrays into a row-major (R, C)
    layout (step t holds every row's t-th fold), and the flat index of each row's sum."""
    lengths = [min(cols, pos0 + r + 1) for r in range(rows)]
    visible = np.arange(cols)[None, :] < np.array(lengths)[:, None]
    steps = []
    while max(lengths) > 1:
        dst, src = [], []
        for r, n in enumerate(lengths):
            if n > 1:
                h = n // 2
                dst.extend(range(r * cols, r * cols + h))
                src.extend(range(r * cols + n - h, r * cols + n))
                lengths[r] = n - h
        steps.append((np.array(dst), np.array(src)))
    for a in [visible, *(x for st in steps for x in st)]:
        a.flags.writeable = False
    return visible, tuple(steps), np.arange(rows) * cols


def _norm_operands(x, op: str, *vectors):
    x = _f32(x, op)
    if x.ndim == 0:
        raise ValueError(f"{op}: x must have at least one axis")
    out = [x]
    for v in vectors:
        v = _f32(v, op)
        if v.shape != (x.shape[-1],):
            raise ValueError(f"{op}: gamma/beta must have shape ({x.shape[-1]},), got {v.shape}")
        out.append(v)
    return out


def layernorm(x, gamma, beta, eps) -> np.ndarray:
    """LayerNorm over the last axis of x (..., C), gamma and beta (C,), in fp32::

        mean = row_sum(x) / C                            (fp32 divide by float32(C))
        d    = x - mean
        var  = row_sum(d * d) / C                        (biased variance, two-pass)
        y    = ((d / sqrt(var + eps)) * gamma) + beta    (sqrt correctly rounded)
    """
    x, gamma, beta = _norm_operands(x, "layernorm", gamma, beta)
    n = x.shape[-1]
    if n == 0:
        return x.copy()
    rows = x.reshape(-1, n)                                    # (R, C)
    mean = _tree_sum(rows) / F32(n)                            # (R,)
    d = rows - mean[:, None]                                   # (R, C)
    var = _tree_sum(d, square=True) / F32(n)                   # (R,)
    y = np.divide(d, np.sqrt(var + F32(eps))[:, None], out=d)  # in place: same bits, no copy
    y *= gamma
    y += beta
    return y.reshape(x.shape)


def rmsnorm(x, gamma, eps) -> np.ndarray:
    """RMSNorm over the last axis of x (..., C), gamma (C,), in fp32::

        ms = row_sum(x * x) / C
        y  = (x / sqrt(ms + eps)) * gamma
    """
    x, gamma = _norm_operands(x, "rmsnorm", gamma)
    n = x.shape[-1]
    if n == 0:
        return x.copy()
    rows = x.reshape(-1, n)                                    # (R, C)
    ms = _tree_sum(rows, square=True) / F32(n)                 # (R,)
    y = rows / np.sqrt(ms + F32(eps))[:, None]                 # (R, C), a new array
    y *= gamma
    return y.reshape(x.shape)


# ------------------------------------------------------------------------- rope and embed

def rope_inv_freq(head_dim: int, theta) -> np.ndarray:
    """inv_freq (head_dim/2,) fp32: ``1 / float32(theta) ** (float32(2i) / float32(head_dim))``.

    Each step fp32: the divide, numpy's float32 ``power``, the reciprocal (as Hugging Face
    computes ``1.0 / base ** (arange(0, dim, 2).float() / dim)``).
    """
    i2 = np.arange(0, head_dim, 2, dtype=np.float32)           # 2i as fp32 (exact)
    return F32(1.0) / np.power(F32(theta), i2 / F32(head_dim))


def rope(x, positions, theta, *, head_dim) -> np.ndarray:
    """Rotary embedding, Hugging Face / LLaMA ``rotate_half`` convention, in fp32.

    x (rows, heads*head_dim) fp32; positions (rows,) int32 (one per row, shared by its heads).
    With h = head_dim/2, per row and head the pairs are (x[i], x[i+h]) (first half with second
    half, *not* adjacent elements)::

        inv = rope_inv_freq(head_dim, theta)             # (h,)
        a   = float32(position) * inv                    # (h,) one fp32 multiply
        c, s = cos(a), sin(a)                            # numpy float32 cos / sin
        y[i]   = x[i]   * c[i] - x[i+h] * s[i]           # products rounded, then subtract
        y[i+h] = x[i+h] * c[i] + x[i]   * s[i]           # products rounded, then add

    which is exactly HF's ``x*cos + rotate_half(x)*sin`` (negation is exact). Rows and heads
    are independent: any split of rows or of whole heads gives the same bits.
    """
    x = _f32(x, "rope")
    pos = np.asarray(positions)
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"rope: head_dim must be even and positive, got {head_dim}")
    if x.ndim != 2 or x.shape[1] % head_dim:
        raise ValueError(f"rope: x must be (rows, heads*{head_dim}), got {x.shape}")
    if pos.shape != (x.shape[0],) or not np.issubdtype(pos.dtype, np.integer):
        raise ValueError(f"rope: positions must be {x.shape[0]} integers, got "
                         f"{pos.shape} {pos.dtype}")
    rows, h = x.shape[0], head_dim // 2
    angle = pos.astype(np.float32)[:, None] * rope_inv_freq(head_dim, theta)[None, :]  # (rows, h)
    c = np.cos(angle)[:, None, :]                              # (rows, 1, h)
    s = np.sin(angle)[:, None, :]
    xh = x.reshape(rows, -1, head_dim)                         # (rows, heads, head_dim)
    x1, x2 = xh[..., :h], xh[..., h:]
    y = np.empty_like(xh)
    y[..., :h] = x1 * c - x2 * s
    y[..., h:] = x2 * c + x1 * s
    return y.reshape(x.shape)


def embed(table, ids) -> np.ndarray:
    """Gather rows: ``out[i] = table[ids[i]]`` (bit copy, any dtype).

    table (V, D), ids (n,) integers -> (n, D). An id outside [0, V) raises ``IndexError``
    (negative ids do not wrap).
    """
    table, ids = np.asarray(table), np.asarray(ids)
    if table.ndim != 2 or ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"embed: table must be (V, D) and ids (n,) integers, got "
                         f"{table.shape} and {ids.shape} {ids.dtype}")
    bad = (ids < 0) | (ids >= table.shape[0])
    if bad.any():
        raise IndexError(f"embed: id {int(ids[bad][0])} out of range [0, {table.shape[0]})")
    return np.take(table, ids, axis=0)
