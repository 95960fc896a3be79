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
from sdk.runtime import Session
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
    if arch == "bert":                                  # encoder passes again
        for again in range(2):
            yield f"again {again}", [seg(i, n, 0) for i, n in enumerate(lens)]
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
    for i, (name, segs) in enumerate(_steps(arch, [3, 9, 5, 6])):
        loaded = i % 3 != 0                     # resident tiles loaded by an earlier step
        got = cached.compile(_group(segs, plan), resident_loaded=loaded)
        want = StepCompiler(plan).compile(_group(segs, plan), resident_loaded=loaded)
        assert got.instructions == want.instructions, name
        for cid in want.programs:
            assert got.programs[cid].to_bytes() == want.programs[cid].to_bytes(), \
                f"{arch} {placement} {name}: core {cid}"
    assert cached.fragments_reused > 0


@pytest.mark.parametrize("placement", ["afd", "unified"])
def test_resident_tiles_are_loaded_once_into_their_place(tiny_dir, placement):
    config = load_config(tiny_dir("llama"))
    target = _target(placement)
    plan = Plan(config, target, max_batch=2, page_tokens=PAGE, max_context=32)
    assert any(plan.resident.values())
    compiler = StepCompiler(plan)
    segs = [Segment(np.array([3]), 5, [0, 1, 2, 3])]
    first, later = (compiler.compile([segs], resident_loaded=flag) for flag in (False, True))
    for cid in target.dense:
        resident = plan.resident[cid]
        loads = [d for d in first.programs[cid] if d.op == "LOAD" and d.hbm in resident]
        assert sorted((d.hbm, d.sram) for d in loads) == sorted(resident.items())
        assert not [d for d in later.programs[cid] if d.op == "LOAD" and d.hbm in resident]
    without = Plan(config, target, max_batch=2, page_tokens=PAGE, max_context=32,
                   resident_weights=False)
    assert not any(without.resident.values())


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


def test_resident_weights_change_traffic_not_bits(tiny_dir, tiny_model):
    """Two calls on one session, with and without resident weights: the same logits (the
    reference's, bit for bit), less HBM traffic with them."""
    model = tiny_model("gpt2")
    ids = [model.tokenizer.encode("hello world")]
    runs = {}
    for resident in (True, False):
        with Session.load(tiny_dir("gpt2"), "embedded://", page_tokens=PAGE,
                          resident_weights=resident) as s:
            runs[resident] = [s.generate(ids, 5, return_logits=True) for _ in range(2)]
    want = model.generate_greedy(ids, 5)
    for resident, outs in runs.items():
        for out in outs:
            assert out.tokens == want
    for a, b in zip(runs[True], runs[False]):
        for x, y in zip(a.logits, b.logits):
            assert (x.view(np.uint32) == y.view(np.uint32)).all()
    assert runs[True][1].report.hbm_bytes < runs[False][1].report.hbm_bytes


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_norms_loaded_per_dense_item_when_they_do_not_all_fit(tiny_dir, tiny_model, arch):
    """A model whose norms take too much SRAM for one window loads each dense item's
    (adjacent) norms: forced here on a tiny model, which must keep the reference's bits."""
    model = tiny_model(arch)
    ids = [model.tokenizer.encode("hello world"), model.tokenizer.encode("a chip")]
    with Session.load(tiny_dir(arch), "embedded://", page_tokens=PAGE) as s:
        s.plan.norm_window = 2 * s.plan.norm_bytes
        s.compiler = StepCompiler(s.plan)
        if arch == "bert":
            got = s.embed(ids).embeddings
            want = model.embed(ids)
            assert (got.view(np.uint32) == want.view(np.uint32)).all()
        else:
            out = s.generate(ids, 3, return_logits=True)
            assert out.tokens == model.generate_greedy(ids, 3)
            want = model.prefill(ids)
            assert (out.logits[0].view(np.uint32) == want.view(np.uint32)).all()
        norm_loads = [d for d in s.compiler.compile(
            [[Segment(np.array(ids[0]), 0, [0, 1], types=np.zeros(len(ids[0]), np.int64))]]
        ).programs[s.target.dense[0]] if d.op == "LOAD" and s.plan.norms <= d.hbm <
            s.plan.norms + s.plan.norms_bytes]
        assert len(norm_loads) == s.config.n_layers + 1          # one per dense item
