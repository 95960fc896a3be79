"""The numpy reference forward pass.

* Self-consistency, bit for bit (np.array_equal): prefill + decode with the KV cache equals a
  full recompute of the whole sequence; a sequence's logits / embedding do not depend on the
  other sequences of its batch.
* Against Hugging Face ``transformers`` (torch CPU, fp32, eval, eager attention): identical
  greedy tokens (HF's own batched, left-padded ``generate``), logits within a stated
  tolerance; BERT mean-pooled embeddings within a stated tolerance.

Tolerances (measured on the tiny checkpoints, torch 2.13 CPU, all positions of prompt + 16
generated tokens): max |logit difference| 2.5e-6 for GPT-2 (|logits| up to 3.6), 1.2e-5 for
LLaMA (up to 15), 1.7e-5 for LLaMA with bf16 weights (up to 17): at most 1.0e-6 of the
largest |logit| in every variant. BERT embeddings differ by at most 6.3e-7 (values up to
1.8, 3.5e-7 relative). The tests allow 1e-5 relative to the largest |value| (>= 10x
margin): the two sides sum in different orders (torch's blocked GEMMs vs numerics'
ascending-k chains), so bits differ, but only at the level of fp32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdk import ReferenceModel, gelu_erf

REL_TOL = 1e-5          # max |ours - transformers| <= REL_TOL * max |transformers|
NEW_TOKENS = 16

DECODER_VARIANTS = {
    "gpt2": ("gpt2", {}),
    "gpt2-scale-by-layer": ("gpt2", {"scale_attn_by_inverse_layer_idx": True}),
    "llama-gqa-untied": ("llama", {}),
    "llama-tied-bias": ("llama", {"tie_word_embeddings": True, "attention_bias": True,
                                  "mlp_bias": True, "num_key_value_heads": 4}),
    "llama-bf16-sharded": ("llama", {"weights_dtype": "BF16", "max_shard_bytes": 40_000}),
}


def _ids(model, prompts):
    return [model.tokenizer.encode(p) for p in prompts]


# ------------------------------------------------------------------- bit-exact self-checks

@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_prefill_plus_decode_equals_full_recompute(tiny_model, prompts, arch):
    model = tiny_model(arch)
    ids = _ids(model, prompts)
    steps = [model.prefill(ids)]                                # (B, V) per step
    generated = [[] for _ in ids]
    for _ in range(NEW_TOKENS):
        nxt = [int(t) for t in np.argmax(steps[-1], axis=-1)]
        for g, t in zip(generated, nxt):
            g.append(t)
        steps.append(model.decode_step(nxt))
    for b, (prompt, gen) in enumerate(zip(ids, generated)):
        full = model.logits(prompt + gen)                       # (T, V), no cache reuse
        incremental = np.stack([s[b] for s in steps])           # positions len(prompt)-1 ..
        assert np.array_equal(full[len(prompt) - 1:], incremental), f"sequence {b}"
    assert generated == model.generate_greedy(ids, NEW_TOKENS)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_batch_composition_does_not_change_a_sequence(tiny_model, prompts, arch):
    model = tiny_model(arch)
    a, b, c = _ids(model, prompts)
    alone = model.prefill([a])[0]
    assert np.array_equal(model.prefill([b, c, a])[2], alone)
    assert np.array_equal(model.prefill([a, b])[0], alone)
    gen_alone = model.generate_greedy([a], NEW_TOKENS)[0]
    gen_batch = model.generate_greedy([c, a, b], NEW_TOKENS)
    assert gen_batch[1] == gen_alone
    assert gen_batch == [model.generate_greedy([s], NEW_TOKENS)[0] for s in (c, a, b)]
    # the whole-sequence logits agree too, whatever the batch
    full = model.forward([a, b], model.new_cache(2), all_positions=True)[0]
    assert np.array_equal(full, model.logits(a))


def test_encoder_batch_composition_and_padding(tiny_model, prompts):
    model = tiny_model("bert")
    ids = _ids(model, prompts)
    alone = [model.embed([s])[0] for s in ids]
    batch = model.embed(ids)                                    # ragged lists
    T = max(map(len, ids))
    padded = np.array([s + [0] * (T - len(s)) for s in ids])    # right padding
    mask = np.array([[1] * len(s) + [0] * (T - len(s)) for s in ids])
    for b in range(len(ids)):
        assert np.array_equal(batch[b], alone[b])
        assert np.array_equal(model.embed(padded, mask)[b], alone[b])
    assert np.array_equal(model.embed(prompts), batch)          # text goes through the tokenizer
    assert batch.shape == (3, 64) and batch.dtype == np.float32


def test_gelu_erf_is_exact_gelu_rounded_once():
    x = np.array([-6.0, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 6.0, 1e-30],
                 dtype=np.float32)
    want = np.array([np.float32((0.5 * v) * math.erfc(-(v * (1 / math.sqrt(2))))) for v in
                     x.astype(np.float64)])
    assert np.array_equal(gelu_erf(x), want)
    # the erfc form keeps full relative precision where 1 + erf(z) would cancel
    # (gelu(-8) = -8 * Phi(-8) = -4.9767684594e-15; via 1 + erf in float64 it is 2% off)
    assert abs(gelu_erf(np.array([-8.0], np.float32))[0] / -4.9767684594e-15 - 1) < 1e-7
    rng = np.random.default_rng(3)
    big = rng.normal(0, 3, size=(37, 41)).astype(np.float32)
    y = gelu_erf(big)
    assert np.array_equal(y[5:9, 2:30], gelu_erf(np.ascontiguousarray(big[5:9, 2:30])))
    assert np.array_equal(gelu_erf(big.T.copy()), y.T)          # elementwise, any layout
    with pytest.raises(TypeError):
        gelu_erf(big.astype(np.float64))


def test_gelu_erf_agrees_with_torch():
    torch = pytest.importorskip("torch")
    x = np.linspace(-8, 8, 4001, dtype=np.float32)
    ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    # torch evaluates in fp32 (cancellation in 1 + erf for x < 0, a few ulps elsewhere): it
    # is within 1e-6 absolute of the exact GELU, which gelu_erf rounds once (measured 9.5e-7)
    assert float(np.max(np.abs(gelu_erf(x) - ref))) <= 2e-6


def test_input_errors(tiny_model, tiny_dir):
    gpt2, bert = tiny_model("gpt2"), tiny_model("bert")
    fresh = ReferenceModel.from_pretrained(tiny_dir("gpt2"))
    with pytest.raises(ValueError, match="decode_step before prefill"):
        fresh.decode_step([1])
    with pytest.raises(ValueError, match="exceed the model's context of 128 positions"):
        gpt2.prefill([[1] * 129])
    with pytest.raises(ValueError, match="140 tokens exceed"):
        gpt2.generate_greedy([[1] * 100], 41)
    with pytest.raises(ValueError, match="token id 300 is outside the vocabulary"):
        gpt2.prefill([[1, 300]])
    with pytest.raises(ValueError, match="embed needs an encoder|encode needs an encoder"):
        gpt2.embed([[1, 2]])
    with pytest.raises(ValueError, match="needs a decoder"):
        bert.prefill([[1, 2]])
    with pytest.raises(ValueError, match="not right padding"):
        bert.embed(np.array([[5, 6, 7]]), np.array([[0, 1, 1]]))
    with pytest.raises(ValueError, match="non-empty"):
        gpt2.prefill([[1], []])


# ------------------------------------------------------------------- against transformers

@pytest.fixture(scope="module")
def hf():
    torch = pytest.importorskip("torch", reason="torch is in the test extra (parity tests)")
    transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
    torch.manual_seed(0)
    return torch, transformers


@pytest.mark.parametrize("variant", list(DECODER_VARIANTS))
def test_decoder_matches_transformers(hf, tiny_dir, prompts, variant):
    torch, transformers = hf
    arch, kw = DECODER_VARIANTS[variant]
    path = tiny_dir(arch, **kw)
    ours = ReferenceModel.from_pretrained(path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    ids = _ids(ours, prompts)
    generated = ours.generate_greedy(ids, NEW_TOKENS)

    # HF's own batched greedy generation (left padding + attention mask, its KV cache)
    T = max(map(len, ids))
    pad = 0
    input_ids = torch.tensor([[pad] * (T - len(s)) + s for s in ids])
    mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in ids])
    theirs.generation_config.eos_token_id = None                # never stop early (ours:
    with torch.no_grad():                                       # exactly NEW_TOKENS)
        out = theirs.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                              max_new_tokens=NEW_TOKENS, pad_token_id=pad)
    assert out[:, T:].tolist() == generated

    # logits of every position of prompt + generated tokens, one sequence at a time
    for prompt, gen in zip(ids, generated):
        seq = prompt + gen
        with torch.no_grad():
            want = theirs(torch.tensor([seq])).logits[0].numpy()        # (T, V)
        got = ours.logits(seq)
        scale = float(np.abs(want).max())
        diff = float(np.abs(got - want).max())
        assert diff <= REL_TOL * scale, f"{variant}: max |diff| {diff:.3g}, scale {scale:.3g}"
        assert [int(t) for t in got[len(prompt) - 1:-1].argmax(-1)] == gen


def test_bert_embeddings_match_transformers(hf, tiny_dir, prompts):
    torch, transformers = hf
    path = tiny_dir("bert")
    ours = ReferenceModel.from_pretrained(path)
    theirs = transformers.AutoModel.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc = tok(prompts, padding=True, return_tensors="pt")       # right padding
    with torch.no_grad():
        hidden = theirs(**enc).last_hidden_state                # (B, T, D)
    m = enc["attention_mask"][..., None].float()
    want = ((hidden * m).sum(1) / m.sum(1)).numpy()             # mean pooling over the mask
    got = ours.embed(enc["input_ids"].numpy(), enc["attention_mask"].numpy())
    diff, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    assert diff <= REL_TOL * scale, f"max |diff| {diff:.3g}, scale {scale:.3g}"
    # token-type ids reach the model the same way
    tt = np.zeros_like(enc["input_ids"].numpy())
    tt[:, 1:3] = 1
    with torch.no_grad():
        hidden = theirs(**enc, token_type_ids=torch.from_numpy(tt)).last_hidden_state
    want = ((hidden * m).sum(1) / m.sum(1)).numpy()
    got = ours.embed(enc["input_ids"].numpy(), enc["attention_mask"].numpy(), tt)
    assert float(np.abs(got - want).max()) <= REL_TOL * float(np.abs(want).max())
