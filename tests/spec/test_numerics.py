"""vp.spec.numerics: the bits of every op, whatever the tiling, and their accuracy.

Bit-exact checks use ``np.array_equal`` on the outputs (or on their uint32 views where the sign
of zero or NaN matters); accuracy checks compare with float64 formulas within stated bounds.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from vp.spec import numerics as nx

F32 = np.float32
U = 2.0 ** -24                     # unit roundoff of fp32


@pytest.fixture
def rng(request):
    # A different but reproducible stream per test.
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


def cuts(rng, n, pieces=None):
    """Random ascending split points 0 = c0 < c1 < ... < ck = n (non-empty pieces)."""
    if n <= 1:
        return [0, n]
    k = pieces or int(rng.integers(1, min(n, 6) + 1))
    inner = sorted(rng.choice(np.arange(1, n), size=min(k - 1, n - 1), replace=False).tolist())
    return [0, *inner, n]


def same_bits(x, y):
    x, y = np.asarray(x), np.asarray(y)
    return x.shape == y.shape and x.dtype == y.dtype and np.array_equal(
        np.ascontiguousarray(x).view(np.uint8), np.ascontiguousarray(y).view(np.uint8))


def by_rows(fn, x, rng, **kw):
    """fn applied to random row blocks of x, stacked back."""
    c = cuts(rng, x.shape[0])
    return np.concatenate([fn(x[a:b], **kw) for a, b in zip(c, c[1:])], axis=0)


# ------------------------------------------------------------------------------------ gemm

def gemm_scalar_reference(a, b, c=None, b_scale=None):
    """The documented chain, one element at a time with fp32 scalars (no numpy vector ops)."""
    M, K = a.shape
    N = b.shape[1]
    out = np.empty((M, N), F32)
    for m in range(M):
        for n in range(N):
            acc = F32(0.0) if c is None else F32(c[m, n])
            for k in range(K):
                p = F32(F32(a[m, k]) * F32(b[k, n]))
                acc = F32(acc + p)
            out[m, n] = acc if b_scale is None else F32(acc * F32(b_scale[n]))
    return out


def test_gemm_is_the_documented_fp32_chain(rng):
    a, b, c = randn(rng, 3, 37), randn(rng, 37, 5), randn(rng, 3, 5)
    s = rng.uniform(0.01, 0.1, 5).astype(F32)
    assert same_bits(nx.gemm(a, b), gemm_scalar_reference(a, b))
    assert same_bits(nx.gemm(a, b, c), gemm_scalar_reference(a, b, c))
    assert same_bits(nx.gemm(a, b, b_scale=s), gemm_scalar_reference(a, b, b_scale=s))
    # Not a pairwise/BLAS sum: the reverse k order gives different bits somewhere.
    big_a, big_b = randn(rng, 4, 256), randn(rng, 256, 8)
    fwd = nx.gemm(big_a, big_b)
    rev = nx.gemm(big_a[:, ::-1].copy(), big_b[::-1].copy())
    assert not np.array_equal(fwd, rev)
    assert same_bits(fwd, gemm_scalar_reference(big_a, big_b))


def test_gemm_transposed_layouts(rng):
    a, b = randn(rng, 6, 20), randn(rng, 20, 9)
    ref = nx.gemm(a, b)
    assert same_bits(nx.gemm(a.T.copy(), b, trans_a=True), ref)
    assert same_bits(nx.gemm(a, b.T.copy(), trans_b=True), ref)
    assert same_bits(nx.gemm(a.T.copy(), b.T.copy(), trans_a=True, trans_b=True), ref)
    assert same_bits(nx.gemm(np.asfortranarray(a), b[:, :]), ref)     # layout never matters


def tiled_gemm(rng, a, b, b_scale=None, trans_b=False):
    """gemm over random M, N and ascending K tiles, accumulating K tiles through c."""
    M, K = a.shape
    N = b.shape[0] if trans_b else b.shape[1]
    out = np.empty((M, N), F32)
    mc, nc, kc = cuts(rng, M), cuts(rng, N), cuts(rng, K)
    for m0, m1 in zip(mc, mc[1:]):
        for n0, n1 in zip(nc, nc[1:]):
            acc = None
            for i, (k0, k1) in enumerate(zip(kc, kc[1:])):
                last = i == len(kc) - 2
                bt = b[n0:n1, k0:k1] if trans_b else b[k0:k1, n0:n1]
                acc = nx.gemm(a[m0:m1, k0:k1], bt, acc, trans_b=trans_b,
                              b_scale=None if b_scale is None or not last else b_scale[n0:n1])
            out[m0:m1, n0:n1] = acc
    return out


@pytest.mark.parametrize("kind", ["fp32", "bf16", "int8", "fp32_trans_b"])
def test_gemm_tiling_invariance(rng, kind):
    for _ in range(4):
        M, K, N = (int(v) for v in rng.integers(1, 40, 3))
        a = randn(rng, M, K)
        s = None
        if kind == "bf16":
            a, b = nx.to_bf16(a), nx.to_bf16(randn(rng, K, N))
        elif kind == "int8":
            b = rng.integers(-127, 128, (K, N)).astype(np.int8)
            s = rng.uniform(1e-3, 1e-1, N).astype(F32)
        elif kind == "fp32_trans_b":
            b = randn(rng, N, K)
        else:
            b = randn(rng, K, N)
        trans_b = kind == "fp32_trans_b"
        whole = nx.gemm(a, b, trans_b=trans_b, b_scale=s)
        assert same_bits(tiled_gemm(rng, a, b, b_scale=s, trans_b=trans_b), whole)


def test_gemm_close_to_float64(rng):
    for K in (1, 17, 768, 3000):
        a, b = randn(rng, 5, K), randn(rng, K, 7)
        exact = a.astype(np.float64) @ b.astype(np.float64)
        bound = K * U / (1 - K * U) * (np.abs(a).astype(np.float64) @ np.abs(b))
        err = np.abs(nx.gemm(a, b) - exact)
        assert np.all(err <= bound), (K, (err / bound).max())


def test_gemm_bf16_is_fp32_chain_on_exact_values(rng):
    a, b = nx.to_bf16(randn(rng, 4, 50)), nx.to_bf16(randn(rng, 50, 6))
    assert same_bits(nx.gemm(a, b), nx.gemm(nx.from_bf16(a), nx.from_bf16(b)))
    assert same_bits(nx.gemm(a, nx.from_bf16(b)), nx.gemm(nx.from_bf16(a), b))


def test_gemm_int8_weight_only_vs_dequantized(rng):
    K, N = 300, 24
    w = randn(rng, K, N)
    s = (np.abs(w).max(axis=0) / 127).astype(F32)                       # per column
    q = np.clip(np.rint(w / s), -127, 127).astype(np.int8)             # symmetric per column
    a = randn(rng, 3, K)
    deq = q.astype(F32) * s                                              # exact-ish weights
    got = nx.gemm(a, q, b_scale=s)
    ref = nx.gemm(a, deq)
    bound = 4 * K * U * (np.abs(a).astype(np.float64) @ np.abs(deq))
    assert np.all(np.abs(got - ref) <= bound)
    # The scale is applied once, after the fp32 chain over the integer weights.
    assert same_bits(got, nx.gemm(a, q) * s)
    assert same_bits(got, gemm_scalar_reference(a, q.astype(F32), b_scale=s))


def test_gemm_leaves_inputs_alone_and_returns_new_arrays(rng):
    a, b, c, s = randn(rng, 3, 8), randn(rng, 8, 4), randn(rng, 3, 4), randn(rng, 4)
    copies = [x.copy() for x in (a, b, c, s)]
    out = nx.gemm(a, b, c, b_scale=s)
    for x, y in zip((a, b, c, s), copies):
        assert same_bits(x, y)
    assert out.flags.c_contiguous and out.dtype == F32
    assert not np.shares_memory(out, c)


def test_gemm_edge_shapes_and_errors(rng):
    assert nx.gemm(np.zeros((2, 0), F32), np.zeros((0, 3), F32)).tolist() == [[0.0] * 3] * 2
    c = randn(rng, 2, 3)
    assert same_bits(nx.gemm(np.zeros((2, 0), F32), np.zeros((0, 3), F32), c), c)
    with pytest.raises(ValueError, match="inner dimensions"):
        nx.gemm(randn(rng, 2, 3), randn(rng, 4, 5))
    with pytest.raises(ValueError, match="c has shape"):
        nx.gemm(randn(rng, 2, 3), randn(rng, 3, 5), randn(rng, 5, 2))
    with pytest.raises(ValueError, match="b_scale"):
        nx.gemm(randn(rng, 2, 3), randn(rng, 3, 5), b_scale=randn(rng, 4))
    with pytest.raises(TypeError, match="operand a"):
        nx.gemm(np.zeros((2, 3), np.int8), randn(rng, 3, 5))
    with pytest.raises(TypeError, match="operand b"):
        nx.gemm(randn(rng, 2, 3), np.zeros((3, 5), np.float64))


# ------------------------------------------------------------------------------------ bf16

BF16_VECTORS = [  # (fp32 bits, bf16 bits)
    (0x3F800000, 0x3F80),   # 1.0
    (0x3F808000, 0x3F80),   # tie, lower is even -> down
    (0x3F818000, 0x3F82),   # tie, lower is odd -> up
    (0x3F808001, 0x3F81),   # just above the tie -> up
    (0x3F807FFF, 0x3F80),   # just below the tie -> down
    (0xBF818000, 0xBF82),   # negative tie to even
    (0x00000000, 0x0000), (0x80000000, 0x8000),     # ±0
    (0x7F800000, 0x7F80), (0xFF800000, 0xFF80),     # ±inf
    (0x7F7FFFFF, 0x7F80),   # FLT_MAX rounds up to inf
    (0x7F7F7FFF, 0x7F7F),   # largest value that stays finite
    (0x7F7F8000, 0x7F80),   # tie with an odd lower neighbour: up, to inf
    (0x00000001, 0x0000),   # smallest subnormal -> +0
    (0x00008000, 0x0000),   # subnormal tie, even -> down
    (0x00018000, 0x0002),   # subnormal tie, odd -> up
    (0x00010000, 0x0001),   # exact bf16 subnormal
    (0x007FFFFF, 0x0080),   # largest subnormal rounds up to the smallest normal
    (0x7FC00000, 0x7FC0),   # quiet NaN
    (0x7F800001, 0x7FC0),   # signalling NaN, payload only in the low bits: stays NaN
    (0xFFC00001, 0xFFC0),   # negative NaN keeps its sign
    (0x7FA00000, 0x7FE0),   # payload top bits kept, quiet bit set
]


def test_bf16_known_vectors():
    x = np.array([f for f, _ in BF16_VECTORS], np.uint32).view(F32)
    want = np.array([b for _, b in BF16_VECTORS], np.uint16)
    got = nx.to_bf16(x)
    assert got.dtype == np.uint16
    assert [hex(v) for v in got] == [hex(v) for v in want]
    assert np.isnan(nx.from_bf16(got[-4:])).all()


def test_bf16_every_pattern_round_trips():
    u = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    x = nx.from_bf16(u)
    assert same_bits(x.view(np.uint32), u.astype(np.uint32) << 16)       # exact widening
    back = nx.to_bf16(x)
    nan = np.isnan(x)
    assert np.array_equal(back[~nan], u[~nan])
    assert np.array_equal(back[nan], u[nan] | 0x0040)


def test_bf16_rounding_matches_an_independent_reference(rng):
    bits = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(F32)
    x = x[np.isfinite(x)]
    got = nx.to_bf16(x)
    # The two bf16 neighbours of x (truncation and next up in magnitude), compared in float64.
    lo = (x.view(np.uint32) >> 16).astype(np.uint16)
    hi = lo + np.uint16(1)
    xd = x.astype(np.float64)
    d_lo = np.abs(nx.from_bf16(lo).astype(np.float64) - xd)
    hi_val = nx.from_bf16(hi).astype(np.float64)
    # When hi is inf, RNE treats it as 2^128 (the next step past the largest bf16).
    hi_dist = np.where(np.isinf(hi_val), np.abs(2.0 ** 128 - np.abs(xd)), np.abs(hi_val - xd))
    want = np.where(d_lo < hi_dist, lo, np.where(d_lo > hi_dist, hi, np.where(lo % 2 == 0, lo, hi)))
    assert np.array_equal(got, want.astype(np.uint16))


def test_from_bf16_rejects_other_dtypes():
    with pytest.raises(TypeError, match="uint16"):
        nx.from_bf16(np.zeros(3, np.float32))


# --------------------------------------------------------------------------------- convert

def test_convert_fp32_to_int8_rounds_half_even_and_saturates():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 126.5, 127.4, 127.5, 200, -200,
                  np.inf, -np.inf, np.nan, -128], F32)
    q = nx.convert(x, nx.FP32, nx.INT8, 1.0)
    assert q.dtype == np.int8
    assert q.tolist() == [0, 2, 2, 0, -2, 126, 127, 127, 127, -127, 127, -127, 0, -127]
    # divide by the scale first (one fp32 divide), then round
    assert nx.convert(np.array([1.0, 0.75, -3.0], F32), "fp32", "int8", 0.5).tolist() == [2, 2, -6]
    x = np.array([0.1], F32)
    assert nx.convert(x, "fp32", "int8", 0.1 / 3).tolist() == [int(np.rint(x[0] / F32(0.1 / 3)))]


def test_convert_int8_to_fp32_multiplies_by_scale(rng):
    q = np.arange(-128, 128, dtype=np.int16).astype(np.int8)
    s = 0.0371
    assert same_bits(nx.convert(q, "int8", "fp32", s), q.astype(F32) * F32(s))


def test_convert_bf16_paths_and_errors(rng):
    x = randn(rng, 33)
    assert same_bits(nx.convert(x, "fp32", "bf16", 7.0), nx.to_bf16(x))
    b = nx.to_bf16(x)
    assert same_bits(nx.convert(b, nx.BF16, nx.FP32, 7.0), nx.from_bf16(b))
    copy = nx.convert(x, "fp32", "fp32", 3.0)
    assert same_bits(copy, x) and not np.shares_memory(copy, x)
    with pytest.raises(ValueError, match="through fp32"):
        nx.convert(b, "bf16", "int8", 1.0)
    with pytest.raises(ValueError, match="unknown dtype"):
        nx.convert(x, "fp16", "fp32")
    with pytest.raises(TypeError, match="stored as uint16"):
        nx.convert(x, "bf16", "fp32")


def test_int8_quantize_round_trip_within_half_step(rng):
    x = randn(rng, 1000)
    s = float(np.abs(x).max() / 127)
    back = nx.convert(nx.convert(x, "fp32", "int8", s), "int8", "fp32", s)
    assert np.all(np.abs(back - x) <= 0.5 * s * (1 + 1e-6))


# ------------------------------------------------------------------ elementwise and rowwise

def _apply(name, x, rng_extra):
    """Call an op on x (rows, cols) with per-test fixed extra operands (broadcast by row)."""
    gamma, beta, other = rng_extra
    if name == "add":
        return nx.add(x, other[: x.shape[0]] if other.ndim == 2 else other)
    return {
        "mul": lambda: nx.mul(x, other),
        "scale": lambda: nx.scale(x, 0.37),
        "gelu": lambda: nx.gelu(x),
        "silu": lambda: nx.silu(x),
        "softmax": lambda: nx.softmax(x, scale=0.125),
        "layernorm": lambda: nx.layernorm(x, gamma, beta, 1e-5),
        "rmsnorm": lambda: nx.rmsnorm(x, gamma, 1e-6),
        "row_sum": lambda: nx.row_sum(x),
    }[name]()


ROW_OPS = ["add", "mul", "scale", "gelu", "silu", "softmax", "layernorm", "rmsnorm", "row_sum"]


@pytest.mark.parametrize("name", ROW_OPS)
def test_rowwise_ops_are_tiling_invariant(rng, name):
    for _ in range(3):
        R, C = int(rng.integers(1, 70)), int(rng.integers(1, 300))
        x = randn(rng, R, C, scale=3.0)
        extra = (randn(rng, C), randn(rng, C), randn(rng, C))
        whole = _apply(name, x, extra)
        assert whole.dtype == F32 and whole.flags.c_contiguous
        c = cuts(rng, R)
        parts = np.concatenate([_apply(name, x[a:b], extra) for a, b in zip(c, c[1:])])
        assert same_bits(parts, whole)
        one_row = np.concatenate([_apply(name, x[r:r + 1], extra) for r in range(R)])
        assert same_bits(one_row, whole)
        # Layout of the input never matters either (a strided SRAM view, a Fortran copy).
        assert same_bits(_apply(name, np.asfortranarray(x), extra), whole)


@pytest.mark.parametrize("fn", [nx.add, nx.mul])
def test_binary_ops_on_flat_splits(rng, fn):
    a, b = randn(rng, 1001), randn(rng, 1001)
    whole = fn(a, b)
    c = cuts(rng, a.size, pieces=7)
    assert same_bits(np.concatenate([fn(a[i:j], b[i:j]) for i, j in zip(c, c[1:])]), whole)
    assert same_bits(whole, (a.astype(np.float64) + b if fn is nx.add else
                             a.astype(np.float64) * b).astype(F32))   # correctly rounded


@pytest.mark.parametrize("fn", [nx.gelu, nx.silu, lambda x: nx.scale(x, 3.3)])
def test_unary_ops_give_each_element_the_same_bits_alone(rng, fn):
    x = randn(rng, 257, scale=5.0)
    whole = fn(x)
    alone = np.array([fn(x[i:i + 1])[0] for i in range(x.size)], F32)
    assert same_bits(alone, whole)
    assert same_bits(fn(x[::3]), whole[::3])
    c = cuts(rng, x.size, pieces=5)
    assert same_bits(np.concatenate([fn(x[i:j]) for i, j in zip(c, c[1:])]), whole)


@pytest.mark.parametrize("name", ROW_OPS + ["rope", "embed", "gemm", "to_bf16", "convert"])
def test_ops_leave_inputs_alone(rng, name):
    x, g, b = randn(rng, 4, 8), randn(rng, 8), randn(rng, 8)
    keep = [v.copy() for v in (x, g, b)]
    if name in ROW_OPS:
        out = _apply(name, x, (g, b, b))
    elif name == "rope":
        out = nx.rope(x, np.array([0, 1, 2, 3], np.int32), 10000.0, head_dim=4)
    elif name == "embed":
        out = nx.embed(x, np.array([3, 0], np.int32))
    elif name == "gemm":
        out = nx.gemm(x, x.T.copy(), x[:, :4].copy())
    elif name == "to_bf16":
        out = nx.to_bf16(x)
    else:
        out = nx.convert(x, "fp32", "int8", 0.1)
    for v, k in zip((x, g, b), keep):
        assert same_bits(v, k)
    assert out.flags.c_contiguous and not np.shares_memory(out, x)


def test_elementwise_ops_reject_bit_patterns():
    with pytest.raises(TypeError, match="from_bf16"):
        nx.gelu(np.zeros(4, np.uint16))
    with pytest.raises(TypeError, match="float32"):
        nx.add(np.zeros(4, F32), np.zeros(4, np.float64))


def test_gelu_and_silu_close_to_float64(rng):
    x = randn(rng, 100_000, scale=4.0)
    xd = x.astype(np.float64)
    ref = 0.5 * xd * (1 + np.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd ** 3)))
    # 1e-6 relative, plus the unavoidable absolute error of (1 + tanh) near -1 in fp32.
    assert np.all(np.abs(nx.gelu(x) - ref) <= 1e-6 * np.abs(ref) + 2.5e-7 * np.abs(xd))
    ref = xd / (1 + np.exp(-xd))
    assert np.all(np.abs(nx.silu(x) - ref) <= 1e-6 * np.abs(ref) + 1e-30)
    # documented operation order, bit for bit
    x3 = (x * x) * x
    u = F32(np.sqrt(2 / np.pi)) * (x + F32(0.044715) * x3)
    assert same_bits(nx.gelu(x), (F32(0.5) * x) * (F32(1) + np.tanh(u)))
    assert same_bits(nx.silu(x), x * (F32(1) / (F32(1) + np.exp(-x))))
    assert same_bits(nx.gelu(np.array([0.0, 1e20, -1e20], F32)), np.array([0, 1e20, -0.0], F32))
    assert same_bits(nx.silu(np.array([-100.0, 100.0], F32)), np.array([-0.0, 100.0], F32))


# -------------------------------------------------------------------------------- row_sum

def tree_reference(v):
    """row_sum's documented halving tree on one row, with Python lists of fp32 scalars."""
    v = [F32(t) for t in v]
    if not v:
        return F32(0.0)
    while len(v) > 1:
        n, h = len(v), len(v) // 2
        v = [F32(v[i] + v[n - h + i]) for i in range(h)] + ([v[h]] if n % 2 else [])
    return v[0]


def test_row_sum_is_the_documented_tree(rng):
    for n in [0, 1, 2, 3, 5, 8, 13, 64, 100, 257]:
        x = randn(rng, 3, n, scale=100.0)
        want = np.array([tree_reference(row) for row in x], F32)
        assert same_bits(nx.row_sum(x), want), n


def test_row_sum_independent_of_row_count_and_layout(rng):
    C = 777
    x = randn(rng, 200, C, scale=10.0)
    whole = nx.row_sum(x)
    for R in rng.integers(1, 200, 10):
        start = int(rng.integers(0, 200 - R + 1))
        assert same_bits(nx.row_sum(x[start:start + R]), whole[start:start + R])
    assert same_bits(nx.row_sum(np.asfortranarray(x)), whole)
    assert same_bits(nx.row_sum(x.reshape(10, 20, C)), whole.reshape(10, 20))


def test_row_sum_accuracy(rng):
    x = randn(rng, 50, 4096)
    exact = x.astype(np.float64).sum(axis=-1)
    bound = math.ceil(math.log2(4096)) * U * np.abs(x).astype(np.float64).sum(axis=-1) * 1.01
    assert np.all(np.abs(nx.row_sum(x) - exact) <= bound)
    ints = rng.integers(-1000, 1000, (7, 999)).astype(F32)                 # exact sums
    assert np.array_equal(nx.row_sum(ints), ints.astype(np.int64).sum(axis=-1).astype(F32))


# -------------------------------------------------------------------------------- softmax

def softmax64(x, scale=1.0, causal=False, pos0=0):
    s = x.astype(np.float64) * scale
    if causal:
        R, C = s.shape[-2:]
        s = np.where(np.arange(C)[None, :] <= pos0 + np.arange(R)[:, None], s, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_row_splits_with_pos0(rng, causal):
    for _ in range(4):
        R, C = int(rng.integers(1, 40)), int(rng.integers(1, 300))
        pos0 = int(rng.integers(0, max(1, C - R + 1)))
        x = randn(rng, 3, R, C, scale=2.0)                              # (heads, R, C)
        whole = nx.softmax(x, scale=0.3, causal=causal, pos0=pos0)
        c = cuts(rng, R)
        parts = np.concatenate([nx.softmax(x[:, a:b], scale=0.3, causal=causal, pos0=pos0 + a)
                                for a, b in zip(c, c[1:])], axis=1)
        assert same_bits(parts, whole)
        heads = np.stack([nx.softmax(x[h], scale=0.3, causal=causal, pos0=pos0) for h in range(3)])
        assert same_bits(heads, whole)


def test_causal_softmax_masks_and_normalises(rng):
    R, C, pos0 = 16, 40, 9
    x = randn(rng, R, C, scale=3.0)
    p = nx.softmax(x, causal=True, pos0=pos0)
    masked = np.arange(C)[None, :] > pos0 + np.arange(R)[:, None]
    assert np.all(p[masked] == 0) and np.all(p[~masked] > 0)
    assert np.all(np.abs(p.astype(np.float64).sum(axis=-1) - 1) <= C * U * 2)
    assert same_bits(nx.softmax(x[:1], causal=True, pos0=0)[0, :1], np.ones(1, F32))


def test_softmax_close_to_float64(rng):
    for causal in (False, True):
        x = randn(rng, 64, 1000)
        ref = softmax64(x, causal=causal, pos0=500)
        got = nx.softmax(x, causal=causal, pos0=500)
        assert np.all(np.abs(got - ref) <= 1e-6 * ref)
    # scale is applied in fp32 first; against the float64 softmax of the fp32 product
    x = randn(rng, 8, 300, scale=4.0)
    s = (x * F32(0.125)).astype(np.float64)
    assert np.all(np.abs(nx.softmax(x, scale=0.125) - softmax64(s)) <= 1e-6 * softmax64(s))


def test_softmax_documented_formula_bits(rng):
    x = randn(rng, 2, 6, 50, scale=3.0)
    s = x * F32(0.3)
    expected = np.zeros_like(s)
    for r in range(6):                        # row r: its 41 + r visible columns only
        v = s[:, r, :41 + r]
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        expected[:, r, :41 + r] = e / nx.row_sum(e)[..., None]
    assert same_bits(nx.softmax(x, scale=0.3, causal=True, pos0=40), expected)


def test_softmax_rejects_negative_pos0(rng):
    with pytest.raises(ValueError, match="pos0"):
        nx.softmax(randn(rng, 2, 3), causal=True, pos0=-1)


# ---------------------------------------------------------------------------------- norms

def test_layernorm_and_rmsnorm_close_to_float64(rng):
    x = randn(rng, 64, 768, scale=3.0) + F32(5.0)
    g, b = randn(rng, 768), randn(rng, 768)
    xd = x.astype(np.float64)
    m = xd.mean(-1, keepdims=True)
    sd = np.sqrt(((xd - m) ** 2).mean(-1, keepdims=True) + 1e-5)
    normed = (xd - m) / sd
    err = np.abs(nx.layernorm(x, g, b, 1e-5) - (normed * g + b))
    # 1e-6 relative to the size of the terms: x/sd and mean/sd are both carried in fp32
    # before they cancel, so an input far from zero mean costs absolute accuracy.
    terms = (np.abs(xd) / sd + np.abs(normed)) * np.abs(g) + np.abs(b)
    assert np.all(err <= 1e-6 * terms)
    normed = xd / np.sqrt((xd ** 2).mean(-1, keepdims=True) + 1e-6)
    err = np.abs(nx.rmsnorm(x, g, 1e-6) - normed * g)
    assert np.all(err <= 1e-6 * np.abs(normed * g))


def test_norms_documented_formula_bits(rng):
    x, g, b = randn(rng, 5, 33), randn(rng, 33), randn(rng, 33)
    n = F32(33)
    mean = nx.row_sum(x) / n
    d = x - mean[:, None]
    var = nx.row_sum(d * d) / n
    assert same_bits(nx.layernorm(x, g, b, 1e-5), d / np.sqrt(var + F32(1e-5))[:, None] * g + b)
    ms = nx.row_sum(x * x) / n
    assert same_bits(nx.rmsnorm(x, g, 1e-6), x / np.sqrt(ms + F32(1e-6))[:, None] * g)
    with pytest.raises(ValueError, match="gamma"):
        nx.layernorm(x, g[:5], b, 1e-5)


# ----------------------------------------------------------------------------------- rope

def rope64_hf(x, positions, theta, head_dim):
    """Straightforward float64 HF rotate_half RoPE."""
    rows = x.shape[0]
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
    freqs = positions.astype(np.float64)[:, None] * inv[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)[:, None, :]        # (rows, 1, d)
    xh = x.astype(np.float64).reshape(rows, -1, head_dim)
    h = head_dim // 2
    rotated = np.concatenate([-xh[..., h:], xh[..., :h]], axis=-1)
    return (xh * np.cos(emb) + rotated * np.sin(emb)).reshape(x.shape)


def test_rope_matches_hf_rotate_half_in_float64(rng):
    for head_dim, theta in [(64, 10000.0), (128, 500000.0), (8, 10.0)]:
        rows, heads = 50, 3
        x = randn(rng, rows, heads * head_dim)
        pos = rng.integers(0, 2048, rows).astype(np.int32)
        got = nx.rope(x, pos, theta, head_dim=head_dim)
        ref = rope64_hf(x, pos, theta, head_dim)
        # fp32 inv_freq is off by ~2 ulp, and the angle error grows with the position.
        mag = np.abs(x).reshape(rows, heads, head_dim)
        mag = (mag + np.roll(mag, head_dim // 2, axis=-1)).reshape(x.shape)
        tol = (2e-7 * (1 + pos.astype(np.float64)) + 1e-6)[:, None] * mag
        assert np.all(np.abs(got - ref) <= tol), head_dim


def test_rope_documented_formula_bits(rng):
    x, pos, d = randn(rng, 5, 2 * 8), np.array([0, 1, 7, 100, 4096], np.int32), 8
    inv = F32(1) / np.power(F32(10000.0), np.arange(0, d, 2, dtype=F32) / F32(d))
    assert same_bits(nx.rope_inv_freq(d, 10000.0), inv)
    a = pos.astype(F32)[:, None, None] * inv
    xh = x.reshape(5, 2, d)
    x1, x2 = xh[..., :4], xh[..., 4:]
    want = np.concatenate([x1 * np.cos(a) - x2 * np.sin(a), x2 * np.cos(a) + x1 * np.sin(a)], -1)
    assert same_bits(nx.rope(x, pos, 10000.0, head_dim=d), want.reshape(5, 16))


def test_rope_pairs_first_half_with_second_half():
    x = np.array([[1.0, 0.0, 0.0, 0.0]], F32)
    y = nx.rope(x, np.array([1], np.int32), 10000.0, head_dim=4)
    assert y[0, 1] == 0 and y[0, 3] == 0                             # not interleaved pairs
    assert y[0, 0] == np.cos(F32(1.0)) and y[0, 2] == np.sin(F32(1.0))


def test_rope_position_zero_is_identity(rng):
    x = randn(rng, 7, 4 * 16)
    y = nx.rope(x, np.zeros(7, np.int32), 10000.0, head_dim=16)
    assert np.array_equal(y, x)


def test_rope_tiling_invariance_rows_and_heads(rng):
    rows, heads, d = 37, 6, 32
    x = randn(rng, rows, heads * d)
    pos = rng.integers(0, 5000, rows).astype(np.int32)
    whole = nx.rope(x, pos, 10000.0, head_dim=d)
    c = cuts(rng, rows)
    parts = np.concatenate([nx.rope(x[a:b], pos[a:b], 10000.0, head_dim=d)
                            for a, b in zip(c, c[1:])])
    assert same_bits(parts, whole)
    hc = cuts(rng, heads)
    by_head = np.concatenate([nx.rope(x[:, a * d:b * d], pos, 10000.0, head_dim=d)
                              for a, b in zip(hc, hc[1:])], axis=1)
    assert same_bits(by_head, whole)
    one = np.concatenate([nx.rope(x[r:r + 1], pos[r:r + 1], 10000.0, head_dim=d)
                          for r in range(rows)])
    assert same_bits(one, whole)


def test_rope_bad_shapes(rng):
    with pytest.raises(ValueError, match="head_dim"):
        nx.rope(randn(rng, 2, 6), np.zeros(2, np.int32), 1e4, head_dim=3)
    with pytest.raises(ValueError, match="rows"):
        nx.rope(randn(rng, 2, 6), np.zeros(2, np.int32), 1e4, head_dim=4)
    with pytest.raises(ValueError, match="positions"):
        nx.rope(randn(rng, 2, 8), np.zeros(3, np.int32), 1e4, head_dim=4)


# ---------------------------------------------------------------------------------- embed

def test_embed_gathers_rows_bit_exactly(rng):
    table = randn(rng, 50, 16)
    ids = rng.integers(0, 50, 23).astype(np.int32)
    out = nx.embed(table, ids)
    assert same_bits(out, table[ids])
    c = cuts(rng, ids.size)
    assert same_bits(np.concatenate([nx.embed(table, ids[a:b]) for a, b in zip(c, c[1:])]), out)
    bf = nx.to_bf16(table)
    assert same_bits(nx.embed(bf, ids), bf[ids])                       # any dtype, bit copy


def test_embed_rejects_out_of_range_ids(rng):
    table = randn(rng, 10, 4)
    for bad in (10, -1):
        with pytest.raises(IndexError, match="out of range"):
            nx.embed(table, np.array([0, bad], np.int32))


def test_causal_row_equals_the_softmax_of_its_visible_prefix():
    """Prefill (a block of query rows with a causal mask) must give each row exactly what a
    decode step over the same keys gives: the plain softmax of the visible prefix."""
    rng = np.random.default_rng(17)
    for rows, cols, pos0 in ((24, 24, 0), (7, 40, 20), (5, 5, 9), (1, 33, 32)):
        x = rng.standard_normal((3, rows, cols)).astype(np.float32)
        y = nx.softmax(x, scale=0.3, causal=True, pos0=pos0)
        for r in range(rows):
            n = min(cols, pos0 + r + 1)
            assert np.array_equal(y[:, r, :n], nx.softmax(x[:, r, :n], scale=0.3))
            assert not y[:, r, n:].any()


def test_gelu_erf_is_exact_gelu_and_elementwise(rng):
    x = randn(rng, 3, 257, scale=4.0)
    y = nx.gelu_erf(x)
    ref = 0.5 * x.astype(np.float64) * np.array(
        [math.erfc(-v / math.sqrt(2.0)) for v in x.astype(np.float64).ravel()]).reshape(x.shape)
    assert np.abs(y - ref).max() <= 1e-6 * np.abs(ref).max() + 1e-30
    assert same_bits(nx.gelu_erf(x[1:2, 5:9]), y[1:2, 5:9])       # position-independent
    assert nx.gelu_erf(np.float32([-20.0]))[0] == 0.0 and nx.gelu_erf(np.float32([0.0]))[0] == 0.0


def gemm_both_paths(monkeypatch, *args, **kw):
    """nx.gemm through the loop path and through the reduce path."""
    results = []
    for reduce_path in (False, True):
        monkeypatch.setattr(nx, "_REDUCE_IS_SEQUENTIAL", reduce_path)
        results.append(nx.gemm(*args, **kw))
    monkeypatch.undo()
    return results


@pytest.mark.parametrize("shape", [(1, 768, 288), (1, 64, 17), (3, 65, 200), (8, 33, 500),
                                   (2, 1, 40), (1, 3000, 16), (5, 7, 9)])
def test_gemm_reduce_path_gives_the_loop_bits(shape, monkeypatch):
    """The two implementations of the k-ascending chain agree bit for bit, with a preloaded
    accumulator and with infinities, NaN and signed zeros in the operands."""
    M, K, N = shape
    rng = np.random.default_rng(M * 1000 + K + N)
    a = (rng.standard_normal((M, K)) * 10.0 ** rng.integers(-6, 6, (M, K))).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    a.flat[::97] = -0.0
    if K > 3:
        b[3, ::5] = np.inf
        b[2, ::11] = np.nan
    assert nx._REDUCE_IS_SEQUENTIAL
    loop, red = gemm_both_paths(monkeypatch, a, b, c)
    np.testing.assert_array_equal(loop.view(np.uint32), red.view(np.uint32))


def awkward_operands(rng, M, K, N):
    """a (M, K), b (K, N), c (M, N) with mixed magnitudes, signed zeros, inf and NaN."""
    a = (rng.standard_normal((M, K)) * 10.0 ** rng.integers(-6, 6, (M, K))).astype(F32)
    b = (rng.standard_normal((K, N)) * 10.0 ** rng.integers(-3, 3, (K, N))).astype(F32)
    c = rng.standard_normal((M, N)).astype(F32)
    a.flat[::13] = -0.0
    b.flat[::29] = -0.0
    c.flat[::3] = -0.0
    if K * N > 40:
        b.flat[7::41] = np.inf
        b.flat[11::53] = -np.inf
        a.flat[5::67] = np.nan
    return a, b, c


def canonical_nan(x):
    """uint32 bits of x with every NaN replaced by one quiet NaN (signed zeros kept)."""
    return np.where(np.isnan(x), F32(np.nan), x).view(np.uint32)


GEMM_SHAPES = [  # (M, K, N): the board's tiles, the reference's whole layers, edge cases
    (1, 768, 384), (8, 768, 384), (1, 3072, 96), (8, 3072, 96), (1, 768, 96), (8, 768, 96),
    (1, 768, 192), (8, 768, 192), (1, 768, 832), (1, 64, 12), (1, 12, 64), (8, 64, 8),
    (8, 8, 64), (1, 768, 5456), (8, 300, 2304),
    (1, 1, 1), (1, 1, 300), (3, 1, 7), (1, 500, 1), (7, 33, 1), (2, 5, 3), (1, 17, 15),
    (1, 9, 16), (5, 31, 159), (2, 40, 160), (1, 40, 255), (1, 40, 256), (3, 19, 257)]


@pytest.mark.parametrize("shape", GEMM_SHAPES)
def test_gemm_reduce_path_matches_the_loop_on_awkward_operands(shape, monkeypatch):
    """Bits of the fast path == bits of the definitional loop: with and without c, b_scale,
    transposed layouts, bf16 and int8 operands, signed zeros, inf and NaN."""
    M, K, N = shape
    rng = np.random.default_rng(M * 100003 + K * 101 + N)
    a, b, c = awkward_operands(rng, M, K, N)
    s = rng.uniform(1e-3, 1e-1, N).astype(F32)
    q = rng.integers(-127, 128, (K, N)).astype(np.int8)
    cases = [((a, b), {}), ((a, b, c), {}), ((a, b, c), {"b_scale": s}),
             ((a.T.copy(), b.T.copy(), c), {"trans_a": True, "trans_b": True}),
             ((nx.to_bf16(a), nx.to_bf16(b), c), {}), ((a, q, c), {"b_scale": s})]
    for args, kw in cases:
        loop, red = gemm_both_paths(monkeypatch, *args, **kw)
        assert same_bits(loop.view(np.uint32), red.view(np.uint32)), kw
    if M * K * N <= 20000:      # the scalar definition itself (NaN sign and payload aside)
        with np.errstate(invalid="ignore"):
            want = gemm_scalar_reference(a, b, c)
        assert same_bits(canonical_nan(nx.gemm(a, b, c)), canonical_nan(want))


def test_gemm_negative_zero_accumulator_survives_negative_zero_products():
    """-0 + -0 = -0 but -0 + +0 = +0: the products must keep their signed zeros."""
    a = np.float32([[-0.0, 1.0, -2.0]])
    b = np.zeros((3, 20), F32)
    b[1, ::2] = -0.0
    c = np.full((1, 20), -0.0, F32)
    got = nx.gemm(a, b, c)
    want = gemm_scalar_reference(a, b, c)
    assert same_bits(got.view(np.uint32), want.view(np.uint32))
    assert np.signbit(got).any() and not np.signbit(got).all()


def test_gemm_bits_do_not_depend_on_numpy_buffer_size(rng):
    """The products are computed with numpy's buffer size changed and restored; a caller's
    own buffer size changes neither the bits nor is it left changed."""
    a, b, c = awkward_operands(rng, 8, 200, 384)
    want = nx.gemm(a, b, c)
    before = np.getbufsize()
    for size in (16, 64, 8192, 1 << 20):
        old = np.setbufsize(size)
        try:
            for n in (96, 384):
                got = nx.gemm(a[:, :], b[:, :n], c[:, :n])
                assert same_bits(got.view(np.uint32), want[:, :n].view(np.uint32))
            assert np.getbufsize() == size
        finally:
            np.setbufsize(old)
    assert np.getbufsize() == before


def test_reduce_guard_rejects_other_reductions(monkeypatch):
    """_reduce_is_sequential notices when the reduction is not the k-ascending chain: numpy's
    pairwise sum over a contiguous k axis, or a chain started from +0 instead of acc."""
    def pairwise(acc, a_km, b_kn):
        p = np.ascontiguousarray((a_km[:, :, None] * b_kn[:, None, :]).transpose(1, 2, 0))
        acc += np.add.reduce(p, axis=-1)                       # (M, N, K): k contiguous

    def from_plus_zero(acc, a_km, b_kn):
        staged = np.concatenate([acc[None], a_km[:, :, None] * b_kn[:, None, :]])
        np.add.reduce(staged, axis=0, out=acc)                 # numpy's +0.0 start

    assert nx._reduce_is_sequential()
    for wrong in (pairwise, from_plus_zero):
        monkeypatch.setattr(nx, "_chain_reduce", wrong)
        assert not nx._reduce_is_sequential(), wrong.__name__


def causal_softmax_by_rows(x, scale, pos0):
    """The causal softmax's definition, one row at a time: the plain softmax of the visible
    prefix, zeros after it."""
    out = np.zeros_like(x)
    for r in range(x.shape[-2]):
        n = min(x.shape[-1], pos0 + r + 1)
        out[..., r, :n] = nx.softmax(np.ascontiguousarray(x[..., r, :n]), scale=scale)
    return out


@pytest.mark.parametrize("lead, rows, cols, pos0", [
    ((), 8, 8, 0), ((12,), 8, 8, 0), ((3,), 5, 40, 20), ((2, 3), 7, 9, 1), ((), 1, 16, 3),
    ((4,), 24, 24, 0), ((), 30, 5, 0), ((2,), 6, 33, 31), ((), 3, 1, 0), ((5,), 1, 10, 9),
    ((), 9, 200, 150), ((), 0, 8, 0), ((2,), 4, 0, 0)])
def test_causal_softmax_matches_row_by_row_definition(lead, rows, cols, pos0):
    """All rows at once (masked max, ragged sum trees) == each row's prefix softmax, with
    infinities, NaN, huge and tiny values in visible and hidden columns."""
    rng = np.random.default_rng(rows * 1000 + cols * 10 + pos0)
    x = (rng.standard_normal(lead + (rows, cols)) * 10.0 ** rng.integers(-4, 4, lead + (rows, cols))
         ).astype(F32)
    if x.size > 20:
        x.flat[3::17] = -np.inf
        x.flat[5::29] = np.inf
        x.flat[7::37] = np.nan
        x.flat[9::23] = F32(3e38)
    with np.errstate(invalid="ignore", over="ignore"):
        for scale in (0.125, 1.0):
            got = nx.softmax(x, scale=scale, causal=True, pos0=pos0)
            want = causal_softmax_by_rows(x, scale, pos0)
            assert same_bits(got, want)


def test_row_sum_buffers_are_per_thread_and_per_shape(rng):
    """row_sum reuses a working buffer per shape and thread: concurrent calls, shapes beyond
    the cache and many shapes in turn all give the tree's bits."""
    import threading
    xs = [randn(rng, r, n, scale=10.0 ** int(rng.integers(-3, 4)))
          for r, n in ((1, 768), (8, 768), (3, 5), (1, 1), (300, 301), (2, 70000))]
    want = [np.array([tree_reference(row) for row in x], F32) for x in xs]
    errors = []

    def worker():
        for _ in range(30):
            for x, w in zip(xs, want):
                if not same_bits(nx.row_sum(x), w):
                    errors.append(x.shape)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for n in range(1, 80):                       # more shapes than the cache holds
        x = randn(rng, 2, n)
        assert same_bits(nx.row_sum(x), np.array([tree_reference(r) for r in x], F32))
