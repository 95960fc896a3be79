"""End-to-end benchmark: functional-mode generation on the virtual board against the numpy
reference producing the same tokens, side by side in one run.

The model is GPT-2-small-shaped (12 layers, d_model 768, 12 heads, d_ff 3072, vocabulary
50257, 1024 positions; 124 M random fp32 weights, fixed seed) written to a temporary
directory. Each repetition generates ``NEW_TOKENS`` greedy tokens for one ``PROMPT_TOKENS``
prompt, first with :class:`~sdk.reference.ReferenceModel`, then with a
:class:`~sdk.runtime.Session` on ``embedded://`` (the AFD board, placement ``afd``); the
session (weights uploaded once) is reused across repetitions, as a serving process would.

Figures: ``vp_wall_s`` and ``reference_wall_s`` (medians over ``REPEATS`` repetitions of the
whole generate call), ``ratio`` (= vp / reference; target <= 1.5), ``tokens_equal`` (every
repetition), ``upload_s`` (compile + weight upload, once), ``vp_sim_ms_per_token`` (simulated
decode time per token on the chip), and the machine's load average.

Run ``python -m sdk.bench_e2e`` or ``npuvp bench e2e [--json]``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from sdk.reference import ReferenceModel
from sdk.runtime import Session
from sdk.tiny import write_tiny_checkpoint

#: GPT-2 small's shape (Hugging Face config keys).
GPT2_SMALL = dict(n_embd=768, n_layer=12, n_head=12, n_inner=3072, vocab_size=50257,
                  n_positions=1024)
PROMPT_TOKENS = 8
NEW_TOKENS = 8
REPEATS = 3


def run(repeats: int = REPEATS, new_tokens: int = NEW_TOKENS, shape: dict | None = None) -> dict:
    """Measure and return the figures (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="npuvp-e2e-") as tmp:
        model_dir = write_tiny_checkpoint(tmp, "gpt2", seed=0, **(shape or GPT2_SMALL))
        ref = ReferenceModel.from_pretrained(model_dir)
        t0 = time.perf_counter()
        session = Session.load(model_dir, "embedded://", placement="afd", max_batch=1,
                               max_context=PROMPT_TOKENS + new_tokens)
        upload = time.perf_counter() - t0
        prompt = [[(7 * i + 1) % ref.config.vocab_size for i in range(PROMPT_TOKENS)]]
        ref_s, vp_s, equal, sim = [], [], True, []
        with session:
            for _ in range(repeats):
                t0 = time.perf_counter()
                expected = ref.generate_greedy(prompt, new_tokens)
                ref_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                out = session.generate(prompt, new_tokens)
                vp_s.append(time.perf_counter() - t0)
                equal &= out.tokens == expected
                sim.append(out.report.decode_ps_per_token / 1e9)
    vp, reference = statistics.median(vp_s), statistics.median(ref_s)
    return {"vp_wall_s": round(vp, 3), "reference_wall_s": round(reference, 3),
            "ratio": round(vp / reference, 3), "tokens_equal": equal,
            "upload_s": round(upload, 2), "new_tokens": new_tokens,
            "prompt_tokens": PROMPT_TOKENS, "repeats": repeats,
            "vp_sim_ms_per_token": round(statistics.median(sim), 4),
            "load_average": round(os.getloadavg()[0], 2)}


if __name__ == "__main__":
    import json
    import sys

    figures = run()
    print(json.dumps(figures) if "--json" in sys.argv else
          "\n".join(f"{k:22} {v}" for k, v in figures.items()))
