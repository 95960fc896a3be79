"""Where the virtual board's wall time goes in ``npuvp bench e2e``, and the floor it implies.

The workload of :mod:`sdk.bench_e2e` (a GPT-2-small-shaped random model, ``PROMPT_TOKENS``
prompt tokens, ``NEW_TOKENS`` greedy tokens, the AFD board, functional mode) is run once to
warm up and then ``repeats`` times with timers around the parts of the simulator that do the
work (exclusive seconds: a part's time excludes the parts it calls):

* ``numerics``: the exact fp32 arithmetic of :mod:`vp.spec.numerics` (GEMMs, norms, softmax...)
  that the cores run on their SRAM tiles - the same functions the reference runs;
* ``copies``: bytes moved between the HBM and SRAM backing stores (every LOAD/STORE);
* ``hbm_timing``: the HBM model's timing of each access (channels, banks, rows, refresh);
* ``noc``: the mesh NoC's routing and link reservation of each transaction;
* ``rest``: everything else - core instruction dispatch, the kernel's scheduling, the command
  processor, the host driver and link.

The reference runs with the same timers, so ``reference_numerics_s`` is its arithmetic.
``floor_ratio`` = (board numerics + copies) / reference wall: the ratio the board would reach
if simulating the chip (timing, dispatch, scheduling) cost nothing at all. The timers add
about a microsecond per call, so instrumented walls are a little higher than
``npuvp bench e2e``'s.

Run ``python -m vp.bench.e2e_split [--json]``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import contextmanager

from models.hbm_timing import HbmArray
from models.noc import Noc
from sdk.bench_e2e import GPT2_SMALL, NEW_TOKENS, PROMPT_TOKENS
from sdk.reference import ReferenceModel
from sdk.runtime import Session
from sdk.tiny import write_tiny_checkpoint
from vp.kernel.memory import SparseMemory
from vp.spec import numerics

#: (owner, attribute, part) of every timed function.
TIMED = ([(numerics, name, "numerics") for name in numerics.__all__
          if callable(getattr(numerics, name))]
         + [(SparseMemory, "read_into", "copies"), (SparseMemory, "write", "copies"),
            (HbmArray, "access", "hbm_timing"), (Noc, "_transport", "noc")])
PARTS = ("numerics", "copies", "hbm_timing", "noc")


@contextmanager
def timers(seconds: dict[str, float]):
    """Wrap every :data:`TIMED` function so that its exclusive wall time (s) is added to
    ``seconds[part]`` while the block runs; the originals are restored after it."""
    stack: list[float] = []           # per active timed call: seconds spent in timed callees
    clock = time.perf_counter

    def timed(fn, part):
        def wrapper(*args, **kwargs):
            t0 = clock()
            stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent, inner = clock() - t0, stack.pop()
                seconds[part] += spent - inner
                if stack:
                    stack[-1] += spent
        return wrapper

    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in TIMED]
    try:
        for owner, name, part in TIMED:
            setattr(owner, name, timed(getattr(owner, name), part))
        yield seconds
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def run(repeats: int = 3, shape: dict | None = None) -> dict:
    """Measure and return the split (medians over ``repeats``; see the module docstring).
    ``shape``: Hugging Face GPT-2 config keys (default GPT-2 small)."""
    board = {part: [] for part in PARTS + ("rest", "wall")}
    reference, reference_numerics, equal = [], [], True
    with tempfile.TemporaryDirectory(prefix="npuvp-split-") as tmp:
        model_dir = write_tiny_checkpoint(tmp, "gpt2", seed=0, **(shape or GPT2_SMALL))
        ref = ReferenceModel.from_pretrained(model_dir)
        prompt = [[(7 * i + 1) % ref.config.vocab_size for i in range(PROMPT_TOKENS)]]
        with Session.load(model_dir, "embedded://", placement="afd", max_batch=1,
                          max_context=PROMPT_TOKENS + NEW_TOKENS) as session:
            session.generate(prompt, NEW_TOKENS)
            for _ in range(repeats):
                seconds = dict.fromkeys(PARTS, 0.0)
                with timers(seconds):
                    t0 = time.perf_counter()
                    tokens = session.generate(prompt, NEW_TOKENS).tokens
                    wall = time.perf_counter() - t0
                for part in PARTS:
                    board[part].append(seconds[part])
                board["rest"].append(wall - sum(seconds.values()))
                board["wall"].append(wall)
                seconds = dict.fromkeys(PARTS, 0.0)
                with timers(seconds):
                    t0 = time.perf_counter()
                    equal &= ref.generate_greedy(prompt, NEW_TOKENS) == tokens
                    reference.append(time.perf_counter() - t0)
                reference_numerics.append(seconds["numerics"])
    med = {part: statistics.median(v) for part, v in board.items()}
    ref_wall = statistics.median(reference)
    return {"vp_wall_s": round(med["wall"], 3),
            **{f"vp_{part}_s": round(med[part], 3) for part in PARTS + ("rest",)},
            "reference_wall_s": round(ref_wall, 3),
            "reference_numerics_s": round(statistics.median(reference_numerics), 3),
            "floor_ratio": round((med["numerics"] + med["copies"]) / ref_wall, 3),
            "ratio": round(med["wall"] / ref_wall, 3), "tokens_equal": equal}


if __name__ == "__main__":
    import json
    import sys

    figures = run()
    print(json.dumps(figures) if "--json" in sys.argv else
          "\n".join(f"{k:22} {v}" for k, v in figures.items()))
