"""bf16 and int8 weight-only sessions against the fp32 numpy reference.

The projections' weights (QKV, output, FFN, LM head) are stored in bf16, or in int8 with one
fp32 scale per output column (symmetric, max |w| / 127); activations, embeddings, norms, the
KV cache and accumulation stay fp32. The error is measured as

    max |board - fp32 reference| / max |fp32 reference|

over the logits of the prefill and of the first decode step (both sides fed the same tokens:
the board's own greedy choice), or over BERT's mean-pooled embeddings.

Documented tolerances (measured on the tiny checkpoints, 2 layers, d_model 64):

=============  ===========  ============  =========
               measured     allowed       test
=============  ===========  ============  =========
bf16 logits    0.4-0.7 %    2 %           GPT-2, LLaMA
int8 logits    1.6-2.2 %    5 %           GPT-2, LLaMA
bf16 BERT      0.25 %       2 %           embeddings
int8 BERT      1.0 %        5 %           embeddings
=============  ===========  ============  =========

The error must also be non-zero (the weights really were quantised), and quantisation is a
property of the weights, not of the placement: ``afd`` and ``unified`` give the same bits.
"""

from __future__ import annotations

import numpy as np
import pytest

from sdk import load_config
from sdk.compiler import Plan, Target
from sdk.runtime import Session
from vp.spec.board_config import load_board, shipped_board_path

TOLERANCE = {"bf16": 0.02, "int8": 0.05}    # max |error| / max |fp32 reference value|


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def quantised(tiny_dir):
    """quantised(arch, dtype, placement="afd") -> the board's (B, V) logits of the prefill
    and the first decode step with its greedy tokens (decoders), or the embeddings (BERT);
    cached per module."""
    done = {}

    def run(arch, dtype, placement="afd", prompts=None):
        key = (arch, dtype, placement)
        if key not in done:
            with Session.load(tiny_dir(arch), device=f"embedded://{placement}",
                              placement=placement, dtype=dtype) as s:
                assert s.plan.dtype == dtype
                if arch == "bert":
                    out = s.embed(prompts)
                    done[key] = out.embeddings, None, out.report
                else:
                    out = s.generate(prompts, 2, return_logits=True)
                    done[key] = out.logits, out.tokens, out.report
        return done[key]

    return run


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_logits_within_tolerance(quantised, tiny_model, prompts, arch, dtype):
    model = tiny_model(arch)
    ids = [model.tokenizer.encode(p) for p in prompts]
    logits, tokens, report = quantised(arch, dtype, prompts=prompts)
    assert report.dtype == dtype and report.steps == 2
    want = [model.prefill(ids), model.decode_step([t[0] for t in tokens])]
    for step, (got, ref) in enumerate(zip(logits, want)):
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert np.isfinite(got).all()
        err = relative_error(got, ref)
        assert 0 < err <= TOLERANCE[dtype], \
            f"{arch} {dtype} step {step}: error {err:.2%} of max |logit|"
    # the first token is the argmax of the board's own prefill logits
    assert [t[0] for t in tokens] == [int(i) for i in np.argmax(logits[0], axis=-1)]


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_bert_embeddings_within_tolerance(quantised, tiny_model, prompts, dtype):
    model = tiny_model("bert")
    emb, _, report = quantised("bert", dtype, prompts=prompts)
    want = model.embed(prompts)
    assert emb.shape == want.shape and emb.dtype == np.float32
    err = relative_error(emb, want)
    assert 0 < err <= TOLERANCE[dtype], f"bert {dtype}: error {err:.2%} of max |value|"
    assert report.dtype == dtype


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_placement_does_not_change_quantised_bits(quantised, prompts, dtype):
    afd, afd_tokens, _ = quantised("llama", dtype, prompts=prompts)
    uni, uni_tokens, _ = quantised("llama", dtype, "unified", prompts=prompts)
    assert afd_tokens == uni_tokens
    for step, (a, u) in enumerate(zip(afd, uni)):
        assert np.array_equal(a.view(np.uint32), u.view(np.uint32)), f"step {step}"


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bert"])
def test_quantised_weights_upload_fewer_bytes(tiny_dir, tiny_model, arch):
    """Projection weights (QKV, output, FFN, LM head) take 4 bytes each in fp32, 2 in bf16, 1 in
    int8 (plus a 4-byte scale per column); embeddings, norms and biases stay fp32."""
    c, model = load_config(tiny_dir(arch)), tiny_model(arch)
    target = Target.from_board(load_board(shipped_board_path("afd")), "afd")
    plans = {dt: Plan(c, target, dtype=dt) for dt in ("fp32", "bf16", "int8")}
    size = {dt: sum(a.nbytes for _, a in p.weight_images(model)) for dt, p in plans.items()}
    ffn = (3 if c.arch == "llama" else 2) * c.d_model * c.d_ff
    params = c.n_layers * (c.d_model * (c.q_dim + 2 * c.kv_dim) + c.q_dim * c.d_model + ffn) \
        + (c.vocab_size * c.d_model if c.causal else 0)
    assert size["fp32"] - size["bf16"] == 2 * params, size
    assert 0 < size["bf16"] - size["int8"] < params, size
