"""models.core_timing: the formulas of DESIGN.md §7 / npu.md §6, hand-computed cases, and the
roofline bound over a sweep."""

from __future__ import annotations

import itertools
import math

import pytest

from models import core_timing as ct
from models.core_timing import CoreParams


# -- GEMM --------------------------------------------------------------------------------------

@pytest.mark.parametrize("m, n, k, r, c, expected", [
    # one fold: 2R + C + M - 2
    (4, 4, 4, 4, 4, 2 * 4 + 4 + 4 - 2),                 # 14
    (1, 1, 1, 4, 4, 2 * 4 + 4 + 1 - 2),                 # 11: a tiny GEMM still fills the array
    # folds = ceil(K/R) * ceil(N/C)
    (16, 64, 100, 32, 32, 4 * 2 * (64 + 32 + 16 - 2)),  # ceil(100/32)=4, ceil(64/32)=2 -> 880
    (128, 128, 128, 128, 128, 1 * 1 * (256 + 128 + 128 - 2)),   # 510
    (1, 8192, 8192, 128, 128, 64 * 64 * (256 + 128 + 1 - 2)),   # decode GEMV: 1568768
])
def test_ws_formula_hand_computed(m, n, k, r, c, expected):
    assert ct.gemm_cycles(m, n, k, r, c, "ws") == expected


@pytest.mark.parametrize("m, n, k, r, c, expected", [
    (4, 4, 4, 4, 4, 1 * max(4, 4) + 4 + 4 - 2),         # 10
    (16, 64, 100, 32, 32, 8 * 32 + 32 + 32 - 2),        # M < R: each fold bound by the preload, 318
    (256, 128, 256, 128, 128, 2 * 256 + 128 + 128 - 2),  # M > R: 766
    (1, 8192, 8192, 128, 128, 4096 * 128 + 254),        # 524542
])
def test_pipelined_formula_hand_computed(m, n, k, r, c, expected):
    assert ct.gemm_cycles(m, n, k, r, c, "pipelined") == expected


def test_pipelined_never_slower_than_ws_and_equal_cost_shape():
    for m, n, k in itertools.product((1, 7, 32, 200), (1, 33, 128), (1, 31, 256)):
        ws = ct.gemm_cycles(m, n, k, 32, 32, "ws")
        pl = ct.gemm_cycles(m, n, k, 32, 32, "pipelined")
        assert pl <= ws
        folds = math.ceil(k / 32) * math.ceil(n / 32)
        # the saving is exactly the hidden weight loads and fills: per fold (2R+C+M-2) vs max(M,R)
        assert ws - pl == folds * (2 * 32 + 32 + m - 2) - folds * max(m, 32) - (32 + 32 - 2)


def test_gemm_zero_dimension_and_bad_input():
    assert ct.gemm_cycles(0, 5, 5, 4, 4) == 0
    assert ct.gemm_cycles(5, 5, 0, 4, 4, "pipelined") == 0
    with pytest.raises(ValueError, match="mode"):
        ct.gemm_cycles(4, 4, 4, 4, 4, "os")
    with pytest.raises(ValueError):
        ct.gemm_cycles(4, 4, 4, 0, 4)


def test_gemm_flops_and_bytes():
    assert ct.gemm_flops(2, 3, 4) == 48
    # A 2x4 bf16 (16 B) + B 4x3 int8 (12 B) + C 2x3 fp32 written (24) and read (24) + 3 scales (12)
    assert ct.gemm_bytes(2, 3, 4, 2, 1, accumulate=True, scaled=True) == 16 + 12 + 24 + 24 + 12
    assert ct.gemm_bytes(2, 3, 4) == 32 + 48 + 24


# -- vector ------------------------------------------------------------------------------------

def test_vector_formula():
    p = ct.VECTOR_PIPELINE_CYCLES
    assert ct.vector_cycles("ADD", 1024, 64) == 16 + p
    assert ct.vector_cycles("ADD", 1025, 64) == 17 + p
    assert ct.vector_cycles("SOFTMAX", 1000, 128) == math.ceil(5000 / 128) + p
    assert ct.vector_cycles("GELU", 64, 32) == 16 + p
    assert ct.vector_cycles("LAYERNORM", 4096, 128) == 256 + p
    assert ct.vector_cycles("ADD", 0, 64) == 0
    for op in ("ADD", "MUL", "SCALE", "CONVERT", "EMBED"):
        assert ct.OPS_PER_ELEMENT[op] == 1
    assert (ct.OPS_PER_ELEMENT["GELU"], ct.OPS_PER_ELEMENT["SILU"], ct.OPS_PER_ELEMENT["SOFTMAX"],
            ct.OPS_PER_ELEMENT["LAYERNORM"], ct.OPS_PER_ELEMENT["RMSNORM"],
            ct.OPS_PER_ELEMENT["ROPE"]) == (8, 4, 5, 8, 5, 6)
    with pytest.raises(KeyError):
        ct.vector_cycles("FOO", 4, 4)


def test_vector_bytes():
    assert ct.vector_bytes("ADD", 10) == 120
    assert ct.vector_bytes("GELU", 10) == 80
    assert ct.vector_bytes("LAYERNORM", 12, cols=4) == 96 + 32
    assert ct.vector_bytes("RMSNORM", 12, cols=4) == 96 + 16
    assert ct.vector_bytes("ROPE", 12, rows=3) == 96 + 12
    assert ct.vector_bytes("CONVERT", 10, in_bytes=4, out_bytes=2) == 60


# -- params, roofline --------------------------------------------------------------------------

def test_core_params_derived_and_checked():
    p = CoreParams(kind="cf", matrix_rows=128, matrix_cols=128, vector_lanes=32,
                   sram_bytes=24 << 20, sram_bytes_per_cycle=512, gemm_mode="ws",
                   clock_hz=1_500_000_000)
    assert p.peak_macs_per_cycle == 16384
    assert p.peak_flops_per_s == 2 * 16384 * 1_500_000_000
    assert p.ps(3) == 2000                     # 3 cycles at 1.5 GHz = 2 ns
    assert p.ps(1) == 667                      # rounded up
    with pytest.raises(ValueError):
        CoreParams(kind="gpu")
    with pytest.raises(ValueError):
        CoreParams(gemm_mode="os")
    with pytest.raises(ValueError):
        CoreParams(vector_lanes=0)


def test_roofline_ps():
    # 2 GFLOP at 1 TFLOP/s = 2 ms; 1 GB at 1 TB/s = 1 ms
    assert ct.roofline_ps(2 * 10**9, 10**9, 10**12, 10**12) == 2 * 10**9
    assert ct.roofline_ps(10**9, 4 * 10**9, 10**12, 10**12) == 4 * 10**9
    assert ct.roofline_ps(0, 0, 1, 1) == 0


@pytest.mark.parametrize("mode", ["ws", "pipelined"])
@pytest.mark.parametrize("rows, cols, bpc", [(4, 4, 16), (32, 32, 512), (128, 128, 64)])
def test_gemm_never_faster_than_roofline(mode, rows, cols, bpc):
    p = CoreParams(matrix_rows=rows, matrix_cols=cols, sram_bytes_per_cycle=bpc, gemm_mode=mode,
                   clock_hz=1_000_000_000 + 7)    # an awkward clock: rounding must not break it
    for m, n, k in itertools.product((1, 3, 16, 129, 1024), (1, 17, 128, 640), (1, 5, 128, 777)):
        for a_b, b_b, acc in ((4, 4, False), (2, 1, True)):
            cycles = p.gemm_op_cycles(m, n, k, a_b, b_b, accumulate=acc)
            assert m * n * k <= cycles * p.peak_macs_per_cycle     # utilisation <= 1
            bound = ct.roofline_ps(ct.gemm_flops(m, n, k), ct.gemm_bytes(m, n, k, a_b, b_b, acc),
                                   p.peak_flops_per_s, p.sram_bytes_per_s)
            assert p.ps(cycles) >= bound


@pytest.mark.parametrize("lanes, bpc", [(8, 16), (64, 512), (128, 64)])
def test_vector_never_faster_than_roofline(lanes, bpc):
    p = CoreParams(vector_lanes=lanes, sram_bytes_per_cycle=bpc, clock_hz=1_250_000_001)
    for op in ct.OPS_PER_ELEMENT:
        for n in (1, 7, 64, 1000, 123457):
            nbytes = ct.vector_bytes(op, n, rows=max(1, n // 64), cols=64)
            cycles = p.vector_op_cycles(op, n, nbytes)
            assert ct.vector_ops(op, n) <= cycles * lanes                # utilisation <= 1
            bound = ct.roofline_ps(ct.vector_ops(op, n), nbytes, p.vector_ops_per_s,
                                   p.sram_bytes_per_s)
            assert p.ps(cycles) >= bound


def test_op_cycles_takes_the_slower_of_unit_and_sram():
    assert ct.op_cycles(100, 512 * 10, 512) == 100
    assert ct.op_cycles(5, 512 * 10 + 1, 512) == 11
