"""vp.bench.e2e_split: the timers account exclusive time and leave the code as it was."""

import time

import numpy as np

from models.hbm_timing import HbmArray
from vp.bench import e2e_split
from vp.spec import numerics

TINY = dict(n_embd=64, n_layer=2, n_head=4, n_inner=128, vocab_size=300, n_positions=64)


def test_timers_are_exclusive_and_restored():
    originals = [owner.__dict__[name] for owner, name, _ in e2e_split.TIMED]
    seconds = dict.fromkeys(e2e_split.PARTS, 0.0)
    x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
    with e2e_split.timers(seconds):
        assert numerics.layernorm not in originals          # wrapped while the block runs
        t0 = time.perf_counter()
        for _ in range(20):
            numerics.layernorm(x, [1.0] * 4096, [0.0] * 4096, 1e-5)   # calls row_sum: nested
        block = time.perf_counter() - t0
    assert [owner.__dict__[name] for owner, name, _ in e2e_split.TIMED] == originals
    # exclusive: row_sum's time is not counted twice (once in it, once in layernorm)
    assert 0.5 * block < seconds["numerics"] <= block
    assert seconds["copies"] == seconds["noc"] == seconds["hbm_timing"] == 0


def test_split_of_a_tiny_model_adds_up():
    t0 = time.perf_counter()
    fig = e2e_split.run(repeats=1, shape=TINY)
    assert fig["tokens_equal"] is True
    parts = [fig[f"vp_{p}_s"] for p in e2e_split.PARTS]
    assert all(p > 0 for p in parts), fig          # every part ran
    assert abs(sum(parts) + fig["vp_rest_s"] - fig["vp_wall_s"]) < 0.005
    assert 0 < fig["reference_numerics_s"] <= fig["reference_wall_s"]
    assert fig["floor_ratio"] < fig["ratio"]
    assert time.perf_counter() - t0 < 120
    assert HbmArray.access is HbmArray.__dict__["access"]
