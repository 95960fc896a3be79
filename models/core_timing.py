"""Analytic timing of a core's compute units: pure functions of shapes and parameters.

No kernel imports, no state: the core model (``models/core.py``) calls these per instruction,
``npuvp validate`` and the tests check them against the formulas of DESIGN.md §7 and
docs/design/npu.md §6. Units: cycles (of the core clock), bytes, FLOPs, picoseconds.

Cost of one compute instruction, in cycles::

    cycles = max(unit_cycles, ceil(sram_bytes / sram_bytes_per_cycle))

``unit_cycles`` comes from :func:`gemm_cycles` (matrix unit) or :func:`vector_cycles` (vector
unit); ``sram_bytes`` is what the op reads and writes in the core's SRAM (:func:`gemm_bytes`,
:func:`vector_bytes`). Neither term can beat its roofline bound: the matrix unit does at most
``R·C`` MACs per cycle and every formula below needs at least ``M·N·K / (R·C)`` cycles; the
vector unit does at most ``lanes`` element-operations per cycle; SRAM moves at most
``sram_bytes_per_cycle``. So every op takes at least
``max(FLOPs / peak_flops, bytes / bandwidth)`` (:func:`roofline_ps`) and the utilisation
``MACs / (cycles · R · C)`` is at most 1 by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Cycles from issue to the first result of the vector unit (operand read, up to eight ALU
#: stages for the transcendental approximations, write-back); exposed once per instruction.
VECTOR_PIPELINE_CYCLES = 8

#: Cycles every instruction spends in decode and issue before its unit starts.
ISSUE_CYCLES = 1

#: Vector-ALU operations per element of each vector instruction (one lane does one per
#: cycle). Counts of the numerics in ``vp.spec.numerics``, rounded to a plausible datapath:
#:
#: ========== === ==============================================================
#: ADD/MUL      1  one add or multiply
#: SCALE        1  one multiply
#: CONVERT      1  one convert (and, for int8, the scale multiply fused in it)
#: EMBED        1  one address generation per id (the row copy is memory traffic)
#: SILU         4  negate, exp, add, divide (times x fused with the divide)
#: SOFTMAX      5  scale, max, subtract, exp, sum-and-divide
#: RMSNORM      5  square, sum, rsqrt (amortised), multiply, multiply by gamma
#: ROPE         6  two products, an add or subtract, cos and sin (amortised over heads)
#: GELU         8  x², x³, fma-like poly, multiply, tanh (~3), add, two multiplies
#: GELU_ERF    10  scale, erfc (a rational approximation, ~7), two multiplies
#: LAYERNORM    8  sum, subtract, square, sum, rsqrt, divide, gamma, beta
#: ========== === ==============================================================
OPS_PER_ELEMENT: dict[str, int] = {
    "ADD": 1, "MUL": 1, "SCALE": 1, "CONVERT": 1, "EMBED": 1,
    "SILU": 4, "SOFTMAX": 5, "RMSNORM": 5, "ROPE": 6, "GELU": 8, "LAYERNORM": 8,
    "GELU_ERF": 10,
}

GEMM_MODES = ("ws", "pipelined")
CORE_KINDS = ("ca", "cf", "unified")
_SEC_PS = 10 ** 12


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# -- matrix unit ------------------------------------------------------------------------------

def gemm_cycles(m: int, n: int, k: int, rows: int, cols: int, mode: str = "ws") -> int:
    """Cycles of (m×k)·(k×n) on an R×C weight-stationary systolic array (R = ``rows``,
    C = ``cols``).

    The array holds an R×C tile of B (R values of k, C values of n); the K×N weights form
    ``folds = ceil(K/R) · ceil(N/C)`` tiles.

    * ``"ws"`` (SCALE-Sim's weight-stationary model, folds in series)::

          cycles = ceil(K/R) · ceil(N/C) · (2R + C + M − 2)

      per fold: R cycles to shift the weights in, then the M rows of A stream through a
      pipeline R deep and C wide (M + R + C − 2 cycles from first input to last output).

    * ``"pipelined"`` (double-buffered weights: the next fold's weights shift in while the
      current fold streams)::

          cycles = ceil(K/R) · ceil(N/C) · max(M, R) + R + C − 2

      Derivation: the ws cost of a fold is R cycles of weight shift-in plus
      ``M + R + C − 2`` cycles to stream M rows through a pipeline R deep and C wide. With
      double-buffered weights, fold i+1's weights shift in while fold i streams, and fold
      i+1's rows enter right behind fold i's (its fill overlaps fold i's drain). A fold then
      occupies the array input for ``max(M, R)`` cycles: M cycles of rows, but never fewer
      than the R cycles the next fold's weights need. Only the last fold's fill/drain,
      ``R + C − 2`` cycles, is exposed, once per GEMM. The first fold's weights are taken to
      shift in behind the previous instruction (the formula of record does not charge them).

    Both are ≥ ``M·N·K / (R·C)`` (each fold streams at least M rows through R·C MACs), so the
    array never exceeds its peak. A zero dimension costs 0 cycles.
    """
    if min(m, n, k) < 0 or rows <= 0 or cols <= 0:
        raise ValueError(f"gemm_cycles: bad shape m={m} n={n} k={k} on {rows}x{cols}")
    if m == 0 or n == 0 or k == 0:
        return 0
    folds = _ceil(k, rows) * _ceil(n, cols)
    if mode == "ws":
        return folds * (2 * rows + cols + m - 2)
    if mode == "pipelined":
        return folds * max(m, rows) + rows + cols - 2
    raise ValueError(f"gemm_cycles: unknown mode {mode!r} (expected one of {GEMM_MODES})")


def gemm_flops(m: int, n: int, k: int) -> int:
    """FLOPs of (m×k)·(k×n): one multiply and one add per MAC."""
    return 2 * m * n * k


def gemm_bytes(m: int, n: int, k: int, a_bytes: int = 4, b_bytes: int = 4,
               accumulate: bool = False, scaled: bool = False) -> int:
    """SRAM bytes a GEMM touches: A (m·k·a_bytes) and B (k·n·b_bytes) read once, C (m·n fp32)
    written (and read first when accumulating), per-column fp32 scales (n) when ``scaled``.
    Re-streaming A once per column fold is served by the array's input buffers."""
    c = m * n * 4
    return (m * k * a_bytes + k * n * b_bytes + c + (c if accumulate else 0)
            + (4 * n if scaled else 0))


# -- vector unit ------------------------------------------------------------------------------

def vector_cycles(op: str, elements: int, lanes: int) -> int:
    """Cycles of vector instruction ``op`` over ``elements`` elements on ``lanes`` lanes::

        cycles = ceil(elements · OPS_PER_ELEMENT[op] / lanes) + VECTOR_PIPELINE_CYCLES

    ≥ operations / lanes, so the vector unit never exceeds its peak of ``lanes`` operations
    per cycle. Zero elements cost 0 cycles (nothing is issued to the unit).
    """
    if elements < 0 or lanes <= 0:
        raise ValueError(f"vector_cycles: bad {op} elements={elements} lanes={lanes}")
    if elements == 0:
        return 0
    return _ceil(elements * OPS_PER_ELEMENT[op], lanes) + VECTOR_PIPELINE_CYCLES


def vector_ops(op: str, elements: int) -> int:
    """Vector-ALU operations (the vector unit's FLOPs) of ``op`` over ``elements``."""
    return elements * OPS_PER_ELEMENT[op]


def vector_bytes(op: str, elements: int, *, rows: int = 1, cols: int = 0, in_bytes: int = 4,
                 out_bytes: int = 4) -> int:
    """SRAM bytes a vector instruction touches (reads + writes).

    ``elements`` is the number of output elements. ADD/MUL read two operands; LAYERNORM reads
    gamma and beta (``cols`` each), RMSNORM gamma; ROPE reads one int32 position per row
    (``rows``); EMBED reads one int32 id per row and writes ``elements`` (= output bytes / 4)
    fp32 words; CONVERT reads ``in_bytes`` and writes ``out_bytes`` per element.
    """
    if op in ("ADD", "MUL"):
        return 3 * 4 * elements
    if op == "LAYERNORM":
        return 2 * 4 * elements + 2 * 4 * cols
    if op == "RMSNORM":
        return 2 * 4 * elements + 4 * cols
    if op == "ROPE":
        return 2 * 4 * elements + 4 * rows
    if op == "EMBED":
        return 4 * rows + 4 * elements
    if op == "CONVERT":
        return (in_bytes + out_bytes) * elements
    return 2 * 4 * elements          # SCALE, GELU, GELU_ERF, SILU, SOFTMAX: read a, write out


# -- roofline and the combined cost ------------------------------------------------------------

def roofline_ps(flops: int, nbytes: int, peak_flops_per_s: int, bytes_per_s: int) -> int:
    """Lower bound of an op's time (ps): ``max(flops / peak, bytes / bandwidth)``, rounded
    up to whole picoseconds."""
    compute = _ceil(flops * _SEC_PS, peak_flops_per_s) if flops > 0 else 0
    memory = _ceil(nbytes * _SEC_PS, bytes_per_s) if nbytes > 0 else 0
    return max(compute, memory)


def op_cycles(unit_cycles: int, sram_bytes: int, sram_bytes_per_cycle: int) -> int:
    """An instruction's compute cycles: its unit's cycles, but never less than the cycles
    its SRAM traffic needs."""
    return max(unit_cycles, -(-sram_bytes // sram_bytes_per_cycle))     # ceil, inline: hot


def cycles_ps(cycles: int, clock_hz: int) -> int:
    """Duration of ``cycles`` at ``clock_hz`` in ps, rounded up."""
    return _ceil(cycles * _SEC_PS, clock_hz)


@dataclass(frozen=True)
class CoreParams:
    """What one core has (from the board file's ``cores.<kind>`` section and ``chip.clock``).

    Attributes:
        kind: ``"ca"``, ``"cf"`` or ``"unified"`` (every kind has both units; the sizes differ).
        matrix_rows / matrix_cols: systolic array R × C (MACs per cycle = R·C).
        vector_lanes: fp32 vector elements per cycle.
        sram_bytes: local SRAM size (bytes).
        sram_bytes_per_cycle: SRAM bandwidth seen by the compute units (bytes/cycle).
        gemm_mode: ``"ws"`` or ``"pipelined"`` (see :func:`gemm_cycles`).
        clock_hz: core clock (Hz).
    """

    kind: str = "unified"
    matrix_rows: int = 32
    matrix_cols: int = 32
    vector_lanes: int = 64
    sram_bytes: int = 16 << 20
    sram_bytes_per_cycle: int = 512
    gemm_mode: str = "ws"
    clock_hz: int = 1_500_000_000

    def __post_init__(self):
        if self.kind not in CORE_KINDS:
            raise ValueError(f"CoreParams: kind {self.kind!r} not in {CORE_KINDS}")
        if self.gemm_mode not in GEMM_MODES:
            raise ValueError(f"CoreParams: gemm_mode {self.gemm_mode!r} not in {GEMM_MODES}")
        for name in ("matrix_rows", "matrix_cols", "vector_lanes", "sram_bytes",
                     "sram_bytes_per_cycle", "clock_hz"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CoreParams: {name} must be positive")

    @property
    def peak_macs_per_cycle(self) -> int:
        """MACs per cycle of the matrix unit (R·C)."""
        return self.matrix_rows * self.matrix_cols

    @property
    def peak_flops_per_s(self) -> int:
        """Matrix-unit peak, FLOP/s (2 FLOPs per MAC)."""
        return 2 * self.peak_macs_per_cycle * self.clock_hz

    @property
    def vector_ops_per_s(self) -> int:
        """Vector-unit peak, element-operations per second."""
        return self.vector_lanes * self.clock_hz

    @property
    def sram_bytes_per_s(self) -> int:
        """SRAM bandwidth seen by the compute units, bytes/s."""
        return self.sram_bytes_per_cycle * self.clock_hz

    def gemm_op_cycles(self, m: int, n: int, k: int, a_bytes: int = 4, b_bytes: int = 4,
                       accumulate: bool = False, scaled: bool = False) -> int:
        """Cycles of a GEMM instruction on this core (matrix unit vs SRAM traffic)."""
        return op_cycles(gemm_cycles(m, n, k, self.matrix_rows, self.matrix_cols, self.gemm_mode),
                         gemm_bytes(m, n, k, a_bytes, b_bytes, accumulate, scaled),
                         self.sram_bytes_per_cycle)

    def vector_op_cycles(self, op: str, elements: int, sram_bytes: int) -> int:
        """Cycles of a vector instruction on this core (vector unit vs SRAM traffic)."""
        return op_cycles(vector_cycles(op, elements, self.vector_lanes), sram_bytes,
                         self.sram_bytes_per_cycle)

    def ps(self, cycles: int) -> int:
        """``cycles`` of this core's clock in ps (rounded up)."""
        return -(-cycles * _SEC_PS // self.clock_hz)            # ceil, inline: hot path
