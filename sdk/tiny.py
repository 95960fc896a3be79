"""Tiny random-weight checkpoints of each architecture, for tests and the demo.

:func:`write_tiny_checkpoint` writes a complete Hugging Face model directory offline:
``config.json``, ``model.safetensors`` (or shards + index), ``tokenizer.json`` (+
``tokenizer_config.json``, and ``generation_config.json`` for decoders). ``transformers``
loads it (``AutoModelForCausalLM`` for GPT-2 / LLaMA, ``AutoModel`` for BERT) and so does the
SDK. The same ``(arch, seed, overrides)`` always gives byte-identical files.

Defaults: d_model 64, 2 layers, 4 heads (LLaMA: 4 query heads, 2 KV heads, untied LM head),
vocabulary 300, 128 positions. Weights are drawn from ``numpy.random.default_rng(seed)``
with scales chosen so activations and logits are O(1) (std 1/sqrt(fan_in) projections,
non-trivial norm gains and biases), which makes greedy decoding sensitive to real bugs.

Tokenizers are built without downloads or training libraries, deterministically:

* GPT-2 / LLaMA: byte-level BPE (GPT-2's byte-to-unicode alphabet, 256 byte tokens) with
  merges learned by a small greedy BPE over the built-in text :data:`CORPUS` (most frequent
  pair first, ties to the lexicographically smallest pair). GPT-2 has ``<|endoftext|>`` as
  its last id (bos = eos); LLaMA has ``<unk> <s> </s>`` as ids 0, 1, 2 and prepends ``<s>``.
* BERT: WordPiece with ``[PAD] [UNK] [CLS] [SEP] [MASK]``, printable ASCII characters, their
  ``##`` continuations and the corpus' most frequent words; ``[CLS] text [SEP]``.

If the vocabulary asked for is larger than the corpus provides, the remaining ids are plain
added tokens ``<|extra_N|>`` so every model id decodes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sdk.checkpoint import save_checkpoint
from sdk.model_config import parse_config
from vp.spec import numerics

__all__ = ["write_tiny_checkpoint", "tiny_config", "CORPUS", "ARCHS"]

ARCHS = ("gpt2", "llama", "bert")

#: The fixed text the tiny tokenizers are built from (plain prose, ASCII).
CORPUS = """\
The virtual board models a chip that splits a transformer layer in two. Attention needs the
whole context and streams the key and value cache from memory, so it runs on context aware
cores with a vector unit and a large memory. The feed forward network and the projections
see one token at a time and are bound by matrix compute, so they run on context free cores
with large weight stationary systolic arrays. A mesh network on chip carries activations
between the two kinds of core, and to the memory controllers of the high bandwidth memory.
The host writes commands into rings in memory and rings a doorbell; the command processor
fetches the packets, dispatches work to the cores and the copy engines, waits on fences and
semaphores, and raises an interrupt when the work is done. The driver reads the registers,
uploads the weights, launches the programs and waits for the interrupts. The compiler places
attention on one kind of core and the rest on the other, tiles every matrix to the size of
the local memory, and pipelines two micro batches so that neither kind of core waits for the
other. When attention and the feed forward network take about the same time, both kinds of
core stay busy and the chip gets more tokens per second for the same energy. When one side is
much slower, or the network is starved, the gain collapses and the simple design wins again.
Every number on the board comes from a formula that a test can check: the cycles of a matrix
multiply, the latency of a row miss in memory, the hops of a packet across the mesh, and the
energy of every action counted once. The same program gives the same cycles and the same
bits on every run. A small model with random weights is enough to test all of this: the
tokens it writes mean nothing, but they must be the same tokens, bit for bit, on the board,
in the reference and in the library that everyone else uses.
"""

_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": 300, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128,
        "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "add_cross_attention": False,
        "tie_word_embeddings": True, "initializer_range": 0.02,
        "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "use_cache": True,
    },
    "llama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 300, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None,
        "initializer_range": 0.02, "attention_dropout": 0.0, "use_cache": True,
    },
    "bert": {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 256, "hidden_act": "gelu",
        "max_position_embeddings": 128, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "is_decoder": False, "add_cross_attention": False,
        "initializer_range": 0.02, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
}


def tiny_config(arch: str, **overrides) -> dict[str, Any]:
    """The config.json dict of a tiny model (Hugging Face keys; ``overrides`` win)."""
    if arch not in _DEFAULTS:
        raise ValueError(f"unknown architecture {arch!r} (expected one of {', '.join(ARCHS)})")
    doc = json.loads(json.dumps(_DEFAULTS[arch]))               # deep copy
    if arch == "gpt2":
        v = overrides.get("vocab_size", doc["vocab_size"])
        doc.update(bos_token_id=v - 1, eos_token_id=v - 1)      # <|endoftext|> is the last id
    if arch == "llama" and "rope_theta" in overrides:          # 4.x-style key accepted too
        doc["rope_parameters"]["rope_theta"] = float(overrides.pop("rope_theta"))
    doc.update(overrides)
    doc["dtype"] = "float32"
    return doc


# ------------------------------------------------------------------------------ weights

def _tiny_weights(doc: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random fp32 weights with Hugging Face names and layouts for the parsed config."""
    c = parse_config(doc, source="tiny config")
    D, F, V, P = c.d_model, c.d_ff, c.vocab_size, c.max_positions
    out: dict[str, np.ndarray] = {}

    def normal(name, shape, std):
        out[name] = rng.normal(0.0, std, size=shape).astype(np.float32)

    def proj(name, fan_in, shape, bias=None):                  # weight (+ bias) of one layer
        normal(name + ".weight", shape, fan_in ** -0.5)
        if bias is not None:
            normal(name + ".bias", (bias,), 0.05)

    def norm(name, bias=True, gamma="weight", beta="bias"):
        out[f"{name}.{gamma}"] = (1.0 + rng.normal(0.0, 0.1, D)).astype(np.float32)
        if bias:
            normal(f"{name}.{beta}", (D,), 0.05)

    if c.arch == "gpt2":
        normal("transformer.wte.weight", (V, D), 0.1)    # tied: 0.5 makes greedy repeat
        normal("transformer.wpe.weight", (P, D), 0.1)
        for i in range(c.n_layers):
            p = f"transformer.h.{i}."
            norm(p + "ln_1")
            proj(p + "attn.c_attn", D, (D, 3 * D), 3 * D)       # Conv1D: (in, out)
            proj(p + "attn.c_proj", D, (D, D), D)
            norm(p + "ln_2")
            proj(p + "mlp.c_fc", D, (D, F), F)
            proj(p + "mlp.c_proj", F, (F, D), D)
        norm("transformer.ln_f")
        if not c.tie_embeddings:
            normal("lm_head.weight", (V, D), 0.5)
    elif c.arch == "llama":
        Q, KVD = c.q_dim, c.kv_dim
        ab, mb = (lambda n: n if c.attn_bias else None), (lambda n: n if c.mlp_bias else None)
        normal("model.embed_tokens.weight", (V, D), 0.1)
        for i in range(c.n_layers):
            p = f"model.layers.{i}."
            norm(p + "input_layernorm", bias=False)
            proj(p + "self_attn.q_proj", D, (Q, D), ab(Q))     # nn.Linear: (out, in)
            proj(p + "self_attn.k_proj", D, (KVD, D), ab(KVD))
            proj(p + "self_attn.v_proj", D, (KVD, D), ab(KVD))
            proj(p + "self_attn.o_proj", Q, (D, Q), ab(D))
            norm(p + "post_attention_layernorm", bias=False)
            proj(p + "mlp.gate_proj", D, (F, D), mb(F))
            proj(p + "mlp.up_proj", D, (F, D), mb(F))
            proj(p + "mlp.down_proj", F, (D, F), mb(D))
        norm("model.norm", bias=False)
        if not c.tie_embeddings:
            normal("lm_head.weight", (V, D), 0.5)
    else:
        e = "embeddings."
        normal(e + "word_embeddings.weight", (V, D), 0.5)
        normal(e + "position_embeddings.weight", (P, D), 0.1)
        normal(e + "token_type_embeddings.weight", (c.type_vocab_size, D), 0.1)
        norm(e + "LayerNorm")
        for i in range(c.n_layers):
            p = f"encoder.layer.{i}."
            for n in ("query", "key", "value"):
                proj(p + "attention.self." + n, D, (D, D), D)
            proj(p + "attention.output.dense", D, (D, D), D)
            norm(p + "attention.output.LayerNorm")
            proj(p + "intermediate.dense", D, (F, D), F)
            proj(p + "output.dense", F, (D, F), D)
            norm(p + "output.LayerNorm")
        proj("pooler.dense", D, (D, D), D)                      # unused by mean pooling
    return out


# --------------------------------------------------------------------------- tokenizers

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map (ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _learn_merges(words: Counter, n_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE: merge the most frequent adjacent pair (ties: smallest pair), n times."""
    seqs = {w: list(w) for w in words}
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter = Counter()
        for w, sym in seqs.items():
            for a, b in zip(sym, sym[1:]):
                pairs[a, b] += words[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, sym in seqs.items():
            i, merged = 0, []
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    merged.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    merged.append(sym[i])
                    i += 1
            seqs[w] = merged
    return merges


def _extras(tok, vocab_size: int) -> None:
    from tokenizers import AddedToken
    n = tok.get_vocab_size(with_added_tokens=True)
    if n > vocab_size:
        raise ValueError(f"vocab_size={vocab_size} is too small for the tiny tokenizer "
                         f"(needs at least {n})")
    tok.add_tokens([AddedToken(f"<|extra_{i}|>", special=False, normalized=False)
                    for i in range(n, vocab_size)])


def _byte_bpe_tokenizer(vocab_size: int, specials_first: list[str], specials_last: list[str]):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = Counter(w for w, _ in byte_level.pre_tokenize_str(CORPUS))
    base = len(specials_first) + 256 + len(specials_last)
    merges = _learn_merges(words, max(0, vocab_size - base))
    vocab: dict[str, int] = {}
    for s in specials_first:
        vocab[s] = len(vocab)
    for ch in _bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in specials_first])
    _extras(tok, vocab_size - len(specials_last))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in specials_last])
    return tok


def _wordpiece_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab = {t: i for i, t in enumerate(specials + chars + ["##" + ch for ch in chars])}
    words = Counter(CORPUS.lower().replace(".", " ").replace(",", " ").replace(";", " ")
                    .replace(":", " ").split())
    for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    _extras(tok, vocab_size)
    return tok


def _tokenizer(arch: str, vocab_size: int):
    """(tokenizers.Tokenizer, tokenizer_config dict) for a tiny model."""
    from tokenizers import processors
    if arch == "gpt2":
        tok = _byte_bpe_tokenizer(vocab_size, [], ["<|endoftext|>"])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>"}
    elif arch == "llama":
        tok = _byte_bpe_tokenizer(vocab_size, ["<unk>", "<s>", "</s>"], [])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
        special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    else:
        tok = _wordpiece_tokenizer(vocab_size)
        special = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                   "unk_token": "[UNK]", "mask_token": "[MASK]", "do_lower_case": True}
    n = tok.get_vocab_size(with_added_tokens=True)
    if n != vocab_size:
        raise AssertionError(f"tiny tokenizer has {n} ids, expected {vocab_size}")
    return tok, {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": None,
                 "clean_up_tokenization_spaces": False, **special}


# ------------------------------------------------------------------------------ writer

def _write_json(path: Path, doc) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_tiny_checkpoint(directory: str | os.PathLike, arch: str, seed: int = 0, *,
                          weights_dtype: str = "F32", max_shard_bytes: int | None = None,
                          **overrides) -> Path:
    """Write a tiny random model of ``arch`` ("gpt2" | "llama" | "bert") into ``directory``
    (created if needed) and return its path.

    ``overrides`` are Hugging Face config.json keys (e.g. ``n_layer=3``,
    ``tie_word_embeddings=True``, ``num_key_value_heads=4``). ``weights_dtype``: "F32",
    "BF16" (round to nearest even) or "F16" storage. ``max_shard_bytes`` splits the weights
    into shards with an index.
    """
    out = Path(directory)
    doc = tiny_config(arch, **overrides)
    rng = np.random.default_rng(seed)
    tensors = _tiny_weights(doc, rng)
    dtypes = None
    if weights_dtype == "BF16":
        tensors = {n: numerics.to_bf16(t) for n, t in tensors.items()}
        dtypes = {n: "BF16" for n in tensors}
        doc["dtype"] = "bfloat16"
    elif weights_dtype == "F16":
        tensors = {n: t.astype(np.float16) for n, t in tensors.items()}
        doc["dtype"] = "float16"
    elif weights_dtype != "F32":
        raise ValueError(f"weights_dtype must be 'F32', 'BF16' or 'F16', got {weights_dtype!r}")

    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, tensors, max_shard_bytes=max_shard_bytes, dtypes=dtypes)
    _write_json(out / "config.json", doc)
    tok, tok_config = _tokenizer(arch, doc["vocab_size"])
    tok.save(str(out / "tokenizer.json"))
    tok_config["model_max_length"] = doc.get("n_positions", doc.get("max_position_embeddings"))
    _write_json(out / "tokenizer_config.json", tok_config)
    if arch != "bert":
        _write_json(out / "generation_config.json",
                    {"bos_token_id": doc["bos_token_id"], "eos_token_id": doc["eos_token_id"],
                     "do_sample": False})
    return out
