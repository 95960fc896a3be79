"""The step compiler's code reuse and decode-step shape (bit-exactness is end to end in
``test_runtime.py``).

* A compiler that reuses fragments from earlier steps emits exactly the bytes a fresh
  compiler emits for the same step (prefill, decode steps at advancing positions crossing a
  KV page, batches on both placements, GPT-2, LLaMA and BERT), and it does reuse them.
* A GPT-2 decode step: one fused QKV tile per dense core (weights in the plan's column order),
  one norm load per core per step, and the attention of a core's heads done together.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sdk.compiler import Plan, Segment, StepCompiler, Target
from sdk.model_config import load_config
from vp.spec.board_config import load_board, shipped_board_path

PAGE = 8


def _target(placement: str) -> Target:
    board = "afd" if placement == "afd" else "unified"
    return Target.from_board(load_board(shipped_board_path(board)), placement)


def _steps(arch: str, lens: list[int]):
    """(name, sequences' segments) of a prefill and of decode steps crossing a KV page."""
    def seg(i: int, T: int, pos0: int) -> Segment:
        return Segment((np.arange(T) + i) % 50, pos0, list(range(8 * i, 8 * i + 8)),
                       types=np.zeros(T, np.int64) if arch == "bert" else None)

    yield "prefill", [seg(i, n, 0) for i, n in enumerate(lens)]
    if arch == "bert":                                  # an encoder pass again
        yield "again", [seg(i, n, 0) for i, n in enumerate(lens)]
    else:
        for step in range(6):
            yield f"decode {step}", [seg(i, 1, n + step) for i, n in enumerate(lens)]
        # the first micro-batch as before, the second with more rows (other SRAM layout)
        yield "mixed", [seg(i, 1 if i < len(lens) // 2 else 4, n + 6)
                        for i, n in enumerate(lens)]


def _group(segs: list[Segment], plan: Plan) -> list[list[Segment]]:
    """Sequences split into the plan's micro-batches (as the runtime splits them)."""
    return [[segs[i] for i in g] for g in plan.split_batch(len(segs))]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
@pytest.mark.parametrize("placement", ["afd", "unified"])
def test_reused_fragments_give_a_fresh_compilers_bytes(tiny_dir, arch, placement):
    config = load_config(tiny_dir(arch))
    plan = Plan(config, _target(placement), max_batch=4, page_tokens=PAGE,
                max_context=32)
    cached = StepCompiler(plan)
    for name, segs in _steps(arch, [3, 9, 5, 6]):
        got = cached.compile(_group(segs, plan))
        want = StepCompiler(plan).compile(_group(segs, plan))
        assert got.instructions == want.instructions, name
        for cid in want.programs:
            assert got.programs[cid].to_bytes() == want.programs[cid].to_bytes(), \
                f"{arch} {placement} {name}: core {cid}"
    assert cached.fragments_reused > 0


def test_gpt2_decode_step_shape(tiny_dir):
    config = load_config(tiny_dir("gpt2"))
    target = _target("afd")
    plan = Plan(config, target, max_batch=1, page_tokens=PAGE, max_context=32)
    for tiles in plan.layers[0].qkv.tiles.values():      # q, k and v heads in one tile
        assert len(tiles) == 1 and len(tiles[0].ranges) == 3
    compiler = StepCompiler(plan)
    compiler.compile([[Segment(np.arange(5), 0, [0, 1, 2, 3])]])
    step = compiler.compile([[Segment(np.array([7]), 5, [0, 1, 2, 3])]])
    L = config.n_layers
    for cid in target.dense:
        ops = Counter(d.op for d in step.programs[cid])
        norm_loads = [d for d in step.programs[cid]
                      if d.op == "LOAD" and plan.norms <= d.hbm < plan.norms + plan.norms_bytes]
        assert len(norm_loads) == 1
        assert ops["GEMM"] <= 4 * L + len(plan.lm_head.core_tiles(cid))
    for cid in target.attention:
        ops = Counter(d.op for d in step.programs[cid])
        assert ops["SOFTMAX"] <= L                        # every head of a core: one SOFTMAX


def test_fused_qkv_weight_images_follow_the_tile_columns(tiny_dir, tiny_model):
    model = tiny_model("gpt2")
    plan = Plan(model.config, _target("afd"), max_batch=1, page_tokens=PAGE, max_context=32)
    lin, layer = plan.layers[0].qkv, model.layers[0]
    images = dict(plan.weight_images(model))
    for tiles in lin.tiles.values():
        for t in tiles:
            cols = np.concatenate([np.arange(a, b) for a, b in t.ranges])
            K, n = lin.K, t.n
            data = images[t.address].view(np.float32)
            np.testing.assert_array_equal(data[:K * n].reshape(K, n), layer.w_qkv[:, cols])
            np.testing.assert_array_equal(data[K * n:], layer.b_qkv[cols])
