"""The numpy reference forward pass: GPT-2, LLaMA and BERT-style encoders, in fp32.

This file *defines the model numerics* (DESIGN.md §6): the virtual board in functional mode
must reproduce these logits and embeddings bit for bit. Every arithmetic op is a call into
``vp.spec.numerics`` (the same functions the core models execute). Shapes in comments use
``T`` tokens of one sequence, ``R`` rows of a batch (all sequences' new tokens stacked),
``D`` d_model, ``H`` query heads, ``KV`` key/value heads, ``hd`` head_dim, ``F`` d_ff,
``L`` keys visible in the cache, ``V`` vocabulary.

Batching and determinism
------------------------
A batch is a list of sequences of *different lengths*; there is no padding. Row-wise ops
(projections, norms, activations, RoPE, the LM head) run on all sequences' rows stacked
together: numerics guarantees that a row's bits never depend on the other rows. Attention
runs per sequence against that sequence's own KV cache (:class:`KVCache`, per layer and per
sequence). So a sequence's logits are bit-identical whatever else is in the batch.

Causal attention rows
---------------------
Query row at position ``p`` is softmaxed over exactly its ``p + 1`` visible keys:
``softmax(scores[:, :p+1])``. This matters for bit exactness: the softmax denominator is a
``row_sum`` halving tree whose grouping depends on the row length, so a row padded with
masked (zero) columns would sum in a different order. With this definition the logits of
position ``p`` are the same bits whether computed in a prefill of the whole sequence or in a
decode step with a KV cache (tested). The probabilities are then multiplied with ``V`` over
all ``L`` keys of the chunk, the masked ones being exact zeros: a GEMM chain adding
``+0 * v`` products leaves the fp32 accumulator unchanged (for finite ``v``), so this equals
the GEMM over the visible keys only.

Other conventions
-----------------
* Linear layers: ``y = gemm(x, W, c=bias)`` with ``W`` stored (in, out) = (K, N); the bias
  preloads the accumulator (the GEMM instruction's ``accumulate`` form), so
  ``y = fp32(... fp32(bias + x0·w0) + x1·w1 ...)``. Hugging Face ``nn.Linear`` weights
  (out, in) are transposed once at load; GPT-2's ``Conv1D`` is already (in, out). Fusing
  q/k/v (and LLaMA's gate/up) into one GEMM changes no bits: columns are independent.
* Attention scale ``1/sqrt(hd)`` (GPT-2 with ``scale_attn_by_inverse_layer_idx``:
  ``/ (layer + 1)``), computed in Python float64 and rounded to fp32 by ``softmax``;
  grouped-query attention: query head ``h`` uses KV head ``h // (H / KV)`` (HF ``repeat_kv``).
* Greedy decoding: ``argmax`` of the fp32 logits, lowest id on ties.
* BERT: positions 0..n-1 over the tokens kept by the attention mask, which must be right
  padding (ones then zeros); mean pooling = ``row_sum`` over tokens × float32(1/n).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from sdk.checkpoint import CheckpointError, load_checkpoint
from sdk.model_config import ModelConfig, load_config
from sdk.tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer
from vp.spec import numerics as nx

__all__ = ["ReferenceModel", "KVCache", "gelu_erf", "linear", "attention", "mean_pool"]

F32 = np.float32


# ---------------------------------------------------------------------------------- ops

#: Exact (erf) GELU: the shared definition the cores run (GELU_ERF instruction).
gelu_erf = nx.gelu_erf


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x (R, K) · w (K, N) (+ b (N,) preloaded into the accumulator) -> (R, N)."""
    c = None if b is None else np.broadcast_to(b, (x.shape[0], w.shape[1]))
    return nx.gemm(x, w, c)


def activation(x: np.ndarray, kind: str) -> np.ndarray:
    """The FFN nonlinearity by name ("gelu_tanh" | "gelu_erf" | "silu")."""
    if kind == "gelu_tanh":
        return nx.gelu(x)
    if kind == "gelu_erf":
        return gelu_erf(x)
    return nx.silu(x)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, n_heads: int, head_dim: int,
              scale: float, pos0: int, causal: bool) -> np.ndarray:
    """Multi-head attention of one sequence.

    q (T, H*hd): queries at positions pos0 .. pos0+T-1; k, v (KV, L, hd): the sequence's
    keys and values at positions 0 .. L-1 (L = pos0 + T when causal). -> (T, H*hd).
    """
    T, (n_kv, L, _) = q.shape[0], k.shape
    group = n_heads // n_kv                                     # query heads per KV head
    scores = np.empty((n_heads, T, L), dtype=F32)               # (H, T, L)
    for h in range(n_heads):
        q_h = q[:, h * head_dim:(h + 1) * head_dim]             # (T, hd)
        scores[h] = nx.gemm(q_h, k[h // group], trans_b=True)   # (T, hd)·(hd, L) -> (T, L)
    if causal:
        probs = np.zeros_like(scores)                           # (H, T, L), masked = 0
        for t in range(T):
            n = pos0 + t + 1                                    # keys visible to this row
            probs[:, t, :n] = nx.softmax(scores[:, t, :n], scale=scale)   # (H, n)
    else:
        probs = nx.softmax(scores, scale=scale)                 # (H, T, L)
    out = np.empty((T, n_heads * head_dim), dtype=F32)          # (T, H*hd)
    for h in range(n_heads):
        out[:, h * head_dim:(h + 1) * head_dim] = nx.gemm(probs[h], v[h // group])  # (T, hd)
    return out


def mean_pool(h: np.ndarray) -> np.ndarray:
    """h (n, D) -> (D,): ``row_sum`` over the n tokens, then one fp32 multiply by
    ``float32(1/n)`` (the SCALE instruction: the chip has no divide by a scalar)."""
    return nx.scale(nx.row_sum(np.ascontiguousarray(h.T)), 1.0 / h.shape[0])


# ------------------------------------------------------------------------------ KV cache

class KVCache:
    """Keys and values of every layer for each sequence of a batch, kept per sequence.

    ``k(layer, seq)`` / ``v(layer, seq)`` are (KV, L, hd) fp32 views of the first
    ``L = lengths[seq]`` positions (after RoPE). Storage grows by doubling, so appending one
    token is amortised O(1) copies. A forward pass :meth:`append`-s each layer's new K/V and
    then :meth:`advance`-s the sequence length once.
    """

    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, batch: int):
        self.n_layers, self.n_kv_heads, self.head_dim = n_layers, n_kv_heads, head_dim
        self.lengths = [0] * batch
        shape = (n_kv_heads, 0, head_dim)
        self._k = [[np.empty(shape, F32) for _ in range(batch)] for _ in range(n_layers)]
        self._v = [[np.empty(shape, F32) for _ in range(batch)] for _ in range(n_layers)]

    @property
    def batch(self) -> int:
        return len(self.lengths)

    def append(self, layer: int, seq: int, k_new: np.ndarray, v_new: np.ndarray):
        """Store k_new, v_new (T, KV*hd) at positions lengths[seq].. of this layer and return
        the (KV, L + T, hd) keys and values seen by the new tokens."""
        L, T = self.lengths[seq], k_new.shape[0]
        for store in (self._k, self._v):
            buf = store[layer][seq]
            if buf.shape[1] < L + T:                            # grow by doubling
                grown = np.empty((self.n_kv_heads, max(2 * buf.shape[1], L + T, 16),
                                  self.head_dim), F32)
                grown[:, :L] = buf[:, :L]
                store[layer][seq] = grown
        for store, new in ((self._k, k_new), (self._v, v_new)):
            heads = new.reshape(T, self.n_kv_heads, self.head_dim).transpose(1, 0, 2)
            store[layer][seq][:, L:L + T] = heads               # (KV, T, hd)
        return self.k(layer, seq, L + T), self.v(layer, seq, L + T)

    def advance(self, seq: int, n: int) -> None:
        self.lengths[seq] += n

    def k(self, layer: int, seq: int, length: int | None = None) -> np.ndarray:
        return self._k[layer][seq][:, :self.lengths[seq] if length is None else length]

    def v(self, layer: int, seq: int, length: int | None = None) -> np.ndarray:
        return self._v[layer][seq][:, :self.lengths[seq] if length is None else length]


# ------------------------------------------------------------------------------- weights

@dataclass
class _Layer:
    """One transformer block's weights, fp32, projections in (K, N) layout."""
    norm1_g: np.ndarray                    # GPT-2/LLaMA: before attention; BERT: after it
    norm1_b: np.ndarray | None
    w_qkv: np.ndarray                      # (D, H*hd + 2*KV*hd) fused q | k | v
    b_qkv: np.ndarray | None
    w_o: np.ndarray                        # (H*hd, D)
    b_o: np.ndarray | None
    norm2_g: np.ndarray
    norm2_b: np.ndarray | None
    w_up: np.ndarray                       # (D, F), LLaMA: (D, 2F) fused gate | up
    b_up: np.ndarray | None
    w_down: np.ndarray                     # (F, D)
    b_down: np.ndarray | None


class _Weights:
    """Fetches fp32 tensors by Hugging Face name, trying the known name prefixes, checking
    shapes; every error names the checkpoint and the tensor."""

    def __init__(self, tensors: Mapping[str, np.ndarray], source: str, prefixes: tuple[str, ...]):
        self.tensors, self.source, self.prefixes = tensors, source, prefixes

    def find(self, name: str) -> str | None:
        for p in self.prefixes:
            if p + name in self.tensors:
                return p + name
        return None

    def get(self, name: str, shape: tuple[int, ...], *, transpose: bool = False,
            aliases: tuple[str, ...] = ()) -> np.ndarray:
        key = next((k for k in map(self.find, (name, *aliases)) if k), None)
        if key is None:
            raise CheckpointError(f"{self.source}: missing tensor {name!r}")
        fp32 = getattr(self.tensors, "fp32", None)
        x = fp32(key) if fp32 else np.asarray(self.tensors[key])
        if x.dtype != np.float32:
            if x.dtype == np.uint16:
                raise CheckpointError(f"{self.source}: tensor {key!r} is uint16; pass bf16 "
                                      f"weights through a Checkpoint (its dtype says BF16)")
            if x.dtype.kind != "f":
                raise CheckpointError(f"{self.source}: tensor {key!r} has dtype {x.dtype}; "
                                      f"expected floats")
            x = x.astype(F32)
        want = shape[::-1] if transpose else shape
        if x.shape != want:
            raise CheckpointError(f"{self.source}: tensor {key!r} has shape {x.shape}, "
                                  f"expected {want}")
        return np.ascontiguousarray(x.T) if transpose else x


_PREFIXES = {"gpt2": ("transformer.", ""), "llama": ("model.", ""), "bert": ("", "bert.")}


# --------------------------------------------------------------------------------- model

class ReferenceModel:
    """A loaded model and its numpy forward pass.

    Decoders (GPT-2, LLaMA): :meth:`prefill`, :meth:`decode_step`, :meth:`generate_greedy`,
    :meth:`logits`. Encoders (BERT): :meth:`embed`, :meth:`encode`. All fp32.

    ``weights`` maps Hugging Face tensor names to arrays (a :class:`~sdk.checkpoint.Checkpoint`
    or a dict of float arrays). Construct from a directory with :meth:`from_pretrained`.
    """

    def __init__(self, config: ModelConfig, weights: Mapping[str, np.ndarray], *,
                 tokenizer: Tokenizer | None = None, source: str = "weights"):
        self.config, self.tokenizer = config, tokenizer
        self.cache: KVCache | None = None
        w = _Weights(weights, getattr(weights, "source", source), _PREFIXES[config.arch])
        {"gpt2": self._load_gpt2, "llama": self._load_llama, "bert": self._load_bert}[
            config.arch](w)

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike) -> "ReferenceModel":
        """Load config.json, the safetensors weights and (if present) tokenizer.json."""
        config = load_config(model_dir)
        tok_path = os.path.join(model_dir, TOKENIZER_FILE)
        tokenizer = load_tokenizer(model_dir) if os.path.isfile(tok_path) else None
        return cls(config, load_checkpoint(model_dir), tokenizer=tokenizer)

    # -- loading (HF names -> _Layer)

    def _load_gpt2(self, w: _Weights) -> None:
        c = self.config
        D, F, V = c.d_model, c.d_ff, c.vocab_size
        self.wte = w.get("wte.weight", (V, D))                  # (V, D)
        self.wpe = w.get("wpe.weight", (c.max_positions, D))    # (P, D)
        self.layers = []
        for i in range(c.n_layers):
            p = f"h.{i}."
            self.layers.append(_Layer(                          # Conv1D: already (in, out)
                w.get(p + "ln_1.weight", (D,)), w.get(p + "ln_1.bias", (D,)),
                w.get(p + "attn.c_attn.weight", (D, 3 * D)),
                w.get(p + "attn.c_attn.bias", (3 * D,)),
                w.get(p + "attn.c_proj.weight", (D, D)), w.get(p + "attn.c_proj.bias", (D,)),
                w.get(p + "ln_2.weight", (D,)), w.get(p + "ln_2.bias", (D,)),
                w.get(p + "mlp.c_fc.weight", (D, F)), w.get(p + "mlp.c_fc.bias", (F,)),
                w.get(p + "mlp.c_proj.weight", (F, D)), w.get(p + "mlp.c_proj.bias", (D,))))
        self.final_g, self.final_b = w.get("ln_f.weight", (D,)), w.get("ln_f.bias", (D,))
        self.lm_head = self._lm_head(w, "wte.weight")

    def _load_llama(self, w: _Weights) -> None:
        c = self.config
        D, F, V, Q, KVD = c.d_model, c.d_ff, c.vocab_size, c.q_dim, c.kv_dim
        self.wte = w.get("embed_tokens.weight", (V, D))
        self.wpe = None

        def bias(name, n):
            return w.get(name, (n,)) if c.attn_bias else None

        self.layers = []
        for i in range(c.n_layers):
            p = f"layers.{i}."
            a, m = p + "self_attn.", p + "mlp."
            w_qkv = np.concatenate([w.get(a + "q_proj.weight", (D, Q), transpose=True),
                                    w.get(a + "k_proj.weight", (D, KVD), transpose=True),
                                    w.get(a + "v_proj.weight", (D, KVD), transpose=True)], axis=1)
            b_qkv = (np.concatenate([bias(a + "q_proj.bias", Q), bias(a + "k_proj.bias", KVD),
                                     bias(a + "v_proj.bias", KVD)]) if c.attn_bias else None)
            w_up = np.concatenate([w.get(m + "gate_proj.weight", (D, F), transpose=True),
                                   w.get(m + "up_proj.weight", (D, F), transpose=True)], axis=1)
            b_up = (np.concatenate([w.get(m + "gate_proj.bias", (F,)),
                                    w.get(m + "up_proj.bias", (F,))]) if c.mlp_bias else None)
            self.layers.append(_Layer(
                w.get(p + "input_layernorm.weight", (D,)), None,
                w_qkv, b_qkv,
                w.get(a + "o_proj.weight", (Q, D), transpose=True), bias(a + "o_proj.bias", D),
                w.get(p + "post_attention_layernorm.weight", (D,)), None,
                w_up, b_up,
                w.get(m + "down_proj.weight", (F, D), transpose=True),
                w.get(m + "down_proj.bias", (D,)) if c.mlp_bias else None))
        self.final_g, self.final_b = w.get("norm.weight", (D,)), None
        self.lm_head = self._lm_head(w, "embed_tokens.weight")

    def _lm_head(self, w: _Weights, embedding: str) -> np.ndarray:
        """(D, V): the tied embedding transposed, or ``lm_head.weight`` transposed."""
        c = self.config
        if c.tie_embeddings:
            return w.get(embedding, (c.d_model, c.vocab_size), transpose=True)
        if "lm_head.weight" not in w.tensors:
            raise CheckpointError(f"{w.source}: missing tensor 'lm_head.weight' "
                                  f"(config.json says tie_word_embeddings=false)")
        return _Weights(w.tensors, w.source, ("",)).get(
            "lm_head.weight", (c.d_model, c.vocab_size), transpose=True)

    def _load_bert(self, w: _Weights) -> None:
        c = self.config
        D, F = c.d_model, c.d_ff

        def ln(name):                                           # old checkpoints: gamma/beta
            return (w.get(name + ".weight", (D,), aliases=(name + ".gamma",)),
                    w.get(name + ".bias", (D,), aliases=(name + ".beta",)))

        e = "embeddings."
        self.wte = w.get(e + "word_embeddings.weight", (c.vocab_size, D))
        self.wpe = w.get(e + "position_embeddings.weight", (c.max_positions, D))
        self.wtt = w.get(e + "token_type_embeddings.weight", (c.type_vocab_size, D))
        self.emb_g, self.emb_b = ln(e + "LayerNorm")
        self.layers = []
        for i in range(c.n_layers):
            p = f"encoder.layer.{i}."
            s = p + "attention.self."
            w_qkv = np.concatenate([w.get(s + n + ".weight", (D, D), transpose=True)
                                    for n in ("query", "key", "value")], axis=1)
            b_qkv = np.concatenate([w.get(s + n + ".bias", (D,))
                                    for n in ("query", "key", "value")])
            self.layers.append(_Layer(
                *ln(p + "attention.output.LayerNorm"), w_qkv, b_qkv,
                w.get(p + "attention.output.dense.weight", (D, D), transpose=True),
                w.get(p + "attention.output.dense.bias", (D,)),
                *ln(p + "output.LayerNorm"),
                w.get(p + "intermediate.dense.weight", (D, F), transpose=True),
                w.get(p + "intermediate.dense.bias", (F,)),
                w.get(p + "output.dense.weight", (F, D), transpose=True),
                w.get(p + "output.dense.bias", (D,))))

    # -- blocks

    def _norm(self, x: np.ndarray, g: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """LayerNorm (GPT-2, BERT) or RMSNorm (LLaMA) of x (R, D) -> (R, D)."""
        if self.config.arch == "llama":
            return nx.rmsnorm(x, g, self.config.norm_eps)
        return nx.layernorm(x, g, b, self.config.norm_eps)

    def _self_attention(self, x: np.ndarray, i: int, segments, cache: KVCache | None) -> np.ndarray:
        """x (R, D) normalised rows of all sequences -> attention output (R, D).

        ``segments``: (seq, r0, r1, pos0) — sequence seq's new rows x[r0:r1] are at
        positions pos0.. ; K/V go to (and come from) ``cache`` (None: encoder, no cache)."""
        c, layer = self.config, self.layers[i]
        qkv = linear(x, layer.w_qkv, layer.b_qkv)               # (R, Q + 2·KVD)
        q = qkv[:, :c.q_dim]                                    # (R, H*hd)
        k = qkv[:, c.q_dim:c.q_dim + c.kv_dim]                  # (R, KV*hd)
        v = qkv[:, c.q_dim + c.kv_dim:]                         # (R, KV*hd)
        if c.rope_theta is not None:
            positions = np.concatenate([np.arange(p0, p0 + r1 - r0, dtype=np.int32)
                                        for _, r0, r1, p0 in segments])    # (R,)
            q = nx.rope(q, positions, c.rope_theta, head_dim=c.head_dim)
            k = nx.rope(k, positions, c.rope_theta, head_dim=c.head_dim)
        scale = c.head_dim ** -0.5 / ((i + 1) if c.scale_attn_by_layer else 1)
        out = np.empty((x.shape[0], c.q_dim), dtype=F32)        # (R, H*hd)
        for seq, r0, r1, pos0 in segments:
            if cache is not None:
                k_all, v_all = cache.append(i, seq, k[r0:r1], v[r0:r1])   # (KV, L, hd)
            else:
                k_all = k[r0:r1].reshape(r1 - r0, c.n_kv_heads, c.head_dim).transpose(1, 0, 2)
                v_all = v[r0:r1].reshape(r1 - r0, c.n_kv_heads, c.head_dim).transpose(1, 0, 2)
            out[r0:r1] = attention(q[r0:r1], k_all, v_all, n_heads=c.n_heads,
                                   head_dim=c.head_dim, scale=scale, pos0=pos0,
                                   causal=c.causal)
        return linear(out, layer.w_o, layer.b_o)                # (R, D)

    def _mlp(self, x: np.ndarray, layer: _Layer) -> np.ndarray:
        """x (R, D) -> (R, D): GELU MLP, or SwiGLU ``down(silu(gate(x)) * up(x))``."""
        h = linear(x, layer.w_up, layer.b_up)                   # (R, F) or (R, 2F)
        if self.config.arch == "llama":
            F = self.config.d_ff
            h = nx.mul(nx.silu(h[:, :F]), h[:, F:])             # (R, F)
        else:
            h = activation(h, self.config.activation)           # (R, F)
        return linear(h, layer.w_down, layer.b_down)            # (R, D)

    def _block(self, x: np.ndarray, i: int, segments, cache: KVCache | None) -> np.ndarray:
        """One transformer block, x (R, D) -> (R, D)."""
        L = self.layers[i]
        if self.config.arch == "bert":                          # post-LN
            x = self._norm(nx.add(self._self_attention(x, i, segments, None), x),
                           L.norm1_g, L.norm1_b)
            return self._norm(nx.add(self._mlp(x, L), x), L.norm2_g, L.norm2_b)
        h = self._self_attention(self._norm(x, L.norm1_g, L.norm1_b), i, segments, cache)
        x = nx.add(x, h)                                        # pre-LN residuals
        return nx.add(x, self._mlp(self._norm(x, L.norm2_g, L.norm2_b), L))

    def _embed_rows(self, ids: np.ndarray, positions: np.ndarray,
                    types: np.ndarray | None = None) -> np.ndarray:
        """Token ids (R,) at positions (R,) -> input rows (R, D)."""
        x = nx.embed(self.wte, ids)                             # (R, D)
        if self.config.arch == "gpt2":
            return nx.add(x, nx.embed(self.wpe, positions))
        if self.config.arch == "bert":
            x = nx.add(x, nx.embed(self.wtt, types))            # HF order: (word + type) + pos
            x = nx.add(x, nx.embed(self.wpe, positions))
            return self._norm(x, self.emb_g, self.emb_b)
        return x                                                # LLaMA: RoPE comes later

    def _check_ids(self, seqs: Sequence[np.ndarray], start: Sequence[int]) -> None:
        c = self.config
        for n, (s, p0) in enumerate(zip(seqs, start)):
            if s.ndim != 1 or len(s) == 0:
                raise ValueError(f"sequence {n}: expected a non-empty list of token ids")
            bad = (s < 0) | (s >= c.vocab_size)
            if bad.any():
                raise ValueError(f"sequence {n}: token id {int(s[bad][0])} is outside the "
                                 f"vocabulary [0, {c.vocab_size})")
            if p0 + len(s) > c.max_positions:
                raise ValueError(f"sequence {n}: {p0 + len(s)} tokens exceed the model's "
                                 f"context of {c.max_positions} positions")

    def _as_id_lists(self, batch) -> list[np.ndarray]:
        if isinstance(batch, (str, bytes)) or not isinstance(batch, (list, tuple, np.ndarray)):
            raise TypeError("expected a batch: a list of sequences (token-id lists or strings)")
        out = []
        for s in batch:
            if isinstance(s, str):
                if self.tokenizer is None:
                    raise ValueError("text input needs a tokenizer (no tokenizer.json loaded)")
                s = self.tokenizer.encode(s)
            a = np.asarray(s)
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise TypeError(f"token ids must be integers, got {a.dtype}")
            out.append(a.astype(np.int64).reshape(-1) if a.size else a.reshape(-1))
        return out

    # -- decoder entry points

    def _need(self, causal: bool, what: str) -> None:
        if self.config.causal != causal:
            kind = "a decoder (gpt2, llama)" if causal else "an encoder (bert)"
            raise ValueError(f"{what} needs {kind}; this model is {self.config.arch}")

    def new_cache(self, batch: int) -> KVCache:
        c = self.config
        return KVCache(c.n_layers, c.n_kv_heads, c.head_dim, batch)

    def forward(self, tokens_batch, cache: KVCache, *, all_positions: bool = False):
        """Run each sequence's new tokens through the decoder, extending ``cache``.

        ``tokens_batch[s]``: the new token ids of sequence s (its positions continue from
        ``cache.lengths[s]``). Returns logits (B, V) of each sequence's last new token, or
        with ``all_positions`` a list of (T_s, V) arrays.
        """
        self._need(True, "forward")
        seqs = self._as_id_lists(tokens_batch)
        if len(seqs) != cache.batch:
            raise ValueError(f"{len(seqs)} sequences for a cache of batch {cache.batch}")
        self._check_ids(seqs, cache.lengths)
        segments, r = [], 0
        for s, ids in enumerate(seqs):
            segments.append((s, r, r + len(ids), cache.lengths[s]))
            r += len(ids)
        ids = np.concatenate(seqs)                              # (R,)
        positions = np.concatenate([np.arange(p0, p0 + r1 - r0) for _, r0, r1, p0 in segments])
        x = self._embed_rows(ids, positions)                    # (R, D)
        for i in range(self.config.n_layers):
            x = self._block(x, i, segments, cache)
        for s, r0, r1, _ in segments:
            cache.advance(s, r1 - r0)
        rows = np.arange(r) if all_positions else np.array([r1 - 1 for _, _, r1, _ in segments])
        x = self._norm(np.ascontiguousarray(x[rows]), self.final_g, self.final_b)
        logits = nx.gemm(x, self.lm_head)                       # (rows, V)
        if not all_positions:
            return logits
        return [logits[r0:r1] for _, r0, r1, _ in segments]

    def prefill(self, tokens_batch) -> np.ndarray:
        """Start a batch: prompts (lists of ids, or strings with a tokenizer) of any lengths
        -> logits (B, V) of each prompt's last token. Resets ``self.cache``."""
        seqs = self._as_id_lists(tokens_batch)
        self._need(True, "prefill")
        self.cache = self.new_cache(len(seqs))
        return self.forward(seqs, self.cache)

    def decode_step(self, next_tokens: Sequence[int]) -> np.ndarray:
        """One token per sequence of the current batch -> logits (B, V)."""
        if self.cache is None:
            raise ValueError("decode_step before prefill")
        return self.forward([[int(t)] for t in next_tokens], self.cache)

    def generate_greedy(self, prompts, max_new_tokens: int, *,
                        eos_token_id: int | None = None) -> list[list[int]]:
        """Greedy decoding of a batch -> the new token ids of each prompt.

        Exactly ``max_new_tokens`` are produced per sequence; with ``eos_token_id`` each
        list is cut after its first EOS (the other sequences are unaffected)."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        seqs = self._as_id_lists(prompts)
        self._need(True, "generate_greedy")
        self._check_ids(seqs, [max(0, max_new_tokens - 1)] * len(seqs))   # context fits all
        out: list[list[int]] = [[] for _ in seqs]
        if max_new_tokens == 0:
            return out
        logits = self.prefill(seqs)
        for step in range(max_new_tokens):
            nxt = [int(i) for i in np.argmax(logits, axis=-1)]  # lowest id on ties
            for o, t in zip(out, nxt):
                o.append(t)
            if step + 1 < max_new_tokens:
                logits = self.decode_step(nxt)
        if eos_token_id is not None:
            out = [o[:o.index(eos_token_id) + 1] if eos_token_id in o else o for o in out]
        return out

    def logits(self, tokens) -> np.ndarray:
        """Full recompute of one sequence without reuse: token ids (T,) -> logits (T, V)."""
        return self.forward([tokens], self.new_cache(1), all_positions=True)[0]

    # -- encoder entry points

    def _encoder_inputs(self, inputs, attention_mask, token_type_ids):
        if attention_mask is None:
            seqs = self._as_id_lists(inputs)
            types = ([np.zeros(len(s), np.int64) for s in seqs] if token_type_ids is None
                     else [np.asarray(t, np.int64).reshape(-1) for t in token_type_ids])
            return seqs, types
        ids, mask = np.asarray(inputs), np.asarray(attention_mask)
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise ValueError(f"with attention_mask, inputs must be (B, T) ids and the mask the "
                             f"same shape; got {ids.shape} and {mask.shape}")
        tt = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
        seqs, types = [], []
        for b, (row, m) in enumerate(zip(ids, mask)):
            n = int((m != 0).sum())
            if not (m[:n] != 0).all():
                raise ValueError(f"attention_mask row {b} is not right padding (ones then "
                                 f"zeros): {m.tolist()}")
            seqs.append(row[:n].astype(np.int64))
            types.append(np.asarray(tt[b][:n], np.int64))
        return seqs, types

    def encode(self, inputs, attention_mask=None, token_type_ids=None) -> list[np.ndarray]:
        """Encoder hidden states: a list of (n_b, D), one per sequence (padding dropped)."""
        self._need(False, "encode")
        seqs, types = self._encoder_inputs(inputs, attention_mask, token_type_ids)
        self._check_ids(seqs, [0] * len(seqs))
        for n, (s, t) in enumerate(zip(seqs, types)):
            if t.shape != s.shape or ((t < 0) | (t >= self.config.type_vocab_size)).any():
                raise ValueError(f"sequence {n}: token_type_ids must be {len(s)} ids in "
                                 f"[0, {self.config.type_vocab_size})")
        segments, r = [], 0
        for s, ids in enumerate(seqs):
            segments.append((s, r, r + len(ids), 0))
            r += len(ids)
        positions = np.concatenate([np.arange(len(s)) for s in seqs])
        x = self._embed_rows(np.concatenate(seqs), positions, np.concatenate(types))  # (R, D)
        for i in range(self.config.n_layers):
            x = self._block(x, i, segments, None)
        return [x[r0:r1] for _, r0, r1, _ in segments]

    def embed(self, inputs, attention_mask=None, token_type_ids=None) -> np.ndarray:
        """Mean-pooled sentence embeddings (B, D).

        ``inputs``: a list of strings (tokenized with [CLS]/[SEP]), a list of id lists of any
        lengths, or a (B, T) id array with a (B, T) right-padded ``attention_mask``."""
        return np.stack([mean_pool(h) for h in self.encode(inputs, attention_mask,
                                                            token_type_ids)])
