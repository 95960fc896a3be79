"""``config.json`` of a Hugging Face model -> a frozen, architecture-neutral :class:`ModelConfig`.

Three families are supported (DESIGN.md §6), each from its own Hugging Face keys:

=========  ===================  ===================  =====================
field      GPT-2 (``gpt2``)     LLaMA (``llama``)    BERT (``bert``)
=========  ===================  ===================  =====================
d_model    n_embd               hidden_size          hidden_size
n_layers   n_layer              num_hidden_layers    num_hidden_layers
n_heads    n_head               num_attention_heads  num_attention_heads
n_kv_heads = n_heads            num_key_value_heads  = n_heads
head_dim   d_model / n_heads    head_dim or d/heads  d_model / n_heads
d_ff       n_inner or 4·d       intermediate_size    intermediate_size
max_pos    n_positions          max_position_emb.    max_position_emb.
norm       LayerNorm            RMSNorm              LayerNorm (post-LN)
norm_eps   layer_norm_epsilon   rms_norm_eps         layer_norm_eps
activation gelu_new (tanh)      silu (SwiGLU)        gelu (exact erf)
positions  learned              RoPE (rope_theta)    learned + token types
=========  ===================  ===================  =====================

Anything the reference forward pass does not implement (another architecture, activation,
RoPE scaling, cross-attention, ...) raises :class:`UnsupportedModelError` naming the key, its
value and what is supported. A missing or malformed ``config.json`` raises
:class:`~sdk.checkpoint.CheckpointError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sdk.checkpoint import CheckpointError

__all__ = ["ModelConfig", "UnsupportedModelError", "load_config", "parse_config",
           "ARCHITECTURES", "ACTIVATIONS"]

CONFIG_FILE = "config.json"

#: model_type (and ``architectures`` class names) -> family.
ARCHITECTURES = {"gpt2": "gpt2", "llama": "llama", "bert": "bert"}
_ARCH_CLASSES = {
    "GPT2LMHeadModel": "gpt2", "GPT2Model": "gpt2",
    "LlamaForCausalLM": "llama", "LlamaModel": "llama",
    "BertModel": "bert", "BertForMaskedLM": "bert", "BertForPreTraining": "bert",
}
#: Hugging Face activation names -> the reference's activation.
#: ``gelu_tanh`` = numerics.gelu; ``gelu_erf`` = reference.gelu_erf; ``silu`` = numerics.silu.
ACTIVATIONS = {
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "gelu": "gelu_erf", "gelu_python": "gelu_erf",
    "silu": "silu", "swish": "silu",
}
_FAMILY_ACTIVATIONS = {"gpt2": ("gelu_tanh", "gelu_erf"), "llama": ("silu",),
                       "bert": ("gelu_erf", "gelu_tanh")}


class UnsupportedModelError(ValueError):
    """The model uses an architecture, op or config value the SDK does not implement."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of one model, independent of Hugging Face key names.

    ``arch``: "gpt2" | "llama" | "bert". Sizes are element counts. ``activation``:
    "gelu_tanh" | "gelu_erf" | "silu". ``rope_theta`` is None for learned positions.
    ``type_vocab_size`` is 0 except for BERT. ``eos_token_ids`` is a tuple (HF allows a list).
    ``raw`` keeps the parsed config.json (not compared, not hashed).
    """
    arch: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    max_positions: int
    norm_eps: float
    activation: str
    tie_embeddings: bool
    rope_theta: float | None = None
    type_vocab_size: int = 0
    attn_bias: bool = False
    mlp_bias: bool = False
    scale_attn_by_layer: bool = False       # GPT-2 scale_attn_by_inverse_layer_idx
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def causal(self) -> bool:
        """Decoder (causal LM with a KV cache) or encoder (bidirectional, embeddings)."""
        return self.arch != "bert"

    @property
    def eos_token_id(self) -> int | None:
        return self.eos_token_ids[0] if self.eos_token_ids else None

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim


# ------------------------------------------------------------------------------ parsing

def load_config(model_dir: str | os.PathLike) -> ModelConfig:
    """Read and parse ``config.json`` of a model directory (or the file itself)."""
    path = Path(model_dir)
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (a Hugging Face model directory needs "
                              f"{CONFIG_FILE})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return parse_config(doc, source=str(path))


class _Keys:
    """Typed access to config keys; every error names the file and the key."""

    def __init__(self, doc: Mapping[str, Any], source: str):
        self.doc, self.source = doc, source

    def has(self, key: str) -> bool:
        return self.doc.get(key) is not None

    def get(self, key: str, default=None):
        v = self.doc.get(key)
        return default if v is None else v

    def int(self, key: str, default: int | None = None, *, minimum: int = 1) -> int:
        v = self.doc.get(key, default)
        if v is None:
            raise CheckpointError(f"{self.source}: missing required key {key!r}")
        if isinstance(v, bool) or not isinstance(v, int):
            raise CheckpointError(f"{self.source}: {key!r} must be an integer, got {v!r}")
        if v < minimum:
            raise UnsupportedModelError(f"{self.source}: {key}={v} is not supported "
                                        f"(must be >= {minimum})")
        return v

    def float(self, key: str, default: float | None = None) -> float:
        v = self.doc.get(key, default)
        if v is None:
            raise CheckpointError(f"{self.source}: missing required key {key!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CheckpointError(f"{self.source}: {key!r} must be a number, got {v!r}")
        return float(v)

    def bool(self, key: str, default: bool) -> bool:
        v = self.doc.get(key, default)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise CheckpointError(f"{self.source}: {key!r} must be true or false, got {v!r}")
        return v

    def token_id(self, key: str) -> int | None:
        v = self.doc.get(key)
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        raise CheckpointError(f"{self.source}: {key!r} must be an integer or null, got {v!r}")

    def token_ids(self, key: str) -> tuple[int, ...]:
        v = self.doc.get(key)
        if v is None:
            return ()
        items = v if isinstance(v, list) else [v]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise CheckpointError(f"{self.source}: {key!r} must be an integer, a list of "
                                  f"integers or null, got {v!r}")
        return tuple(items)

    def unsupported(self, key: str, value, supported: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"{self.source}: {key}={value!r} is not supported "
                                     f"(supported: {supported})")

    def require(self, key: str, allowed: tuple, default, supported: str) -> None:
        v = self.doc.get(key, default)
        if v not in allowed:
            raise self.unsupported(key, v, supported)


def _family(k: _Keys) -> str:
    mt = k.doc.get("model_type")
    if mt is not None:
        if mt not in ARCHITECTURES:
            raise k.unsupported("model_type", mt, ", ".join(ARCHITECTURES))
        return ARCHITECTURES[mt]
    archs = k.doc.get("architectures") or []
    for a in archs if isinstance(archs, list) else []:
        if a in _ARCH_CLASSES:
            return _ARCH_CLASSES[a]
    if archs:
        raise k.unsupported("architectures", archs, ", ".join(sorted(_ARCH_CLASSES)))
    raise CheckpointError(f"{k.source}: missing 'model_type' (and no 'architectures'): "
                          f"cannot tell the architecture")


def _activation(k: _Keys, key: str, default: str, family: str) -> str:
    name = k.get(key, default)
    act = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if act is None or act not in _FAMILY_ACTIVATIONS[family]:
        names = [n for n, a in ACTIVATIONS.items() if a in _FAMILY_ACTIVATIONS[family]]
        raise k.unsupported(key, name, ", ".join(names))
    return act


def _heads(k: _Keys, d_model: int, n_heads: int, head_key: str | None) -> int:
    if head_key and k.has(head_key):
        return k.int(head_key)
    if d_model % n_heads:
        raise UnsupportedModelError(f"{k.source}: hidden size {d_model} is not a multiple of "
                                    f"the number of attention heads {n_heads}")
    return d_model // n_heads


def _rope_theta(k: _Keys) -> float:
    """RoPE base from ``rope_parameters`` (transformers >= 5) or ``rope_theta`` +
    ``rope_scaling`` (4.x); only the default (unscaled, full-width) rotation is supported."""
    params = k.doc.get("rope_parameters")
    scaling = k.doc.get("rope_scaling")
    theta = k.doc.get("rope_theta")
    for key, p in (("rope_parameters", params), ("rope_scaling", scaling)):
        if p is None:
            continue
        if not isinstance(p, dict):
            raise CheckpointError(f"{k.source}: {key!r} must be an object, got {p!r}")
        kind = p.get("rope_type", p.get("type", "default"))
        if kind != "default":
            raise k.unsupported(f"{key}.rope_type", kind, "'default' (no RoPE scaling)")
        prf = p.get("partial_rotary_factor", 1.0)
        if prf != 1.0:
            raise k.unsupported(f"{key}.partial_rotary_factor", prf, "1.0")
        if p.get("rope_theta") is not None:
            theta = p["rope_theta"]
    if k.doc.get("partial_rotary_factor", 1.0) != 1.0:
        raise k.unsupported("partial_rotary_factor", k.doc["partial_rotary_factor"], "1.0")
    if theta is None:
        theta = 10000.0
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta <= 0:
        raise CheckpointError(f"{k.source}: 'rope_theta' must be a positive number, got "
                              f"{theta!r}")
    return float(theta)


def parse_config(doc: Mapping[str, Any], *, source: str = CONFIG_FILE) -> ModelConfig:
    """Parse a config.json dict (``source`` names it in error messages)."""
    k = _Keys(doc, source)
    family = _family(k)
    common = dict(bos_token_id=k.token_id("bos_token_id"),
                  eos_token_ids=k.token_ids("eos_token_id"),
                  pad_token_id=k.token_id("pad_token_id"), raw=dict(doc))
    if k.bool("add_cross_attention", False):
        raise k.unsupported("add_cross_attention", True, "false")

    if family == "gpt2":
        d, h = k.int("n_embd"), k.int("n_head")
        k.require("scale_attn_weights", (True,), True, "true")
        return ModelConfig(
            arch="gpt2", vocab_size=k.int("vocab_size"), d_model=d, n_layers=k.int("n_layer"),
            n_heads=h, n_kv_heads=h, head_dim=_heads(k, d, h, None),
            d_ff=k.int("n_inner") if k.has("n_inner") else 4 * d,
            max_positions=k.int("n_positions"), norm_eps=k.float("layer_norm_epsilon", 1e-5),
            activation=_activation(k, "activation_function", "gelu_new", "gpt2"),
            tie_embeddings=k.bool("tie_word_embeddings", True), attn_bias=True, mlp_bias=True,
            scale_attn_by_layer=k.bool("scale_attn_by_inverse_layer_idx", False), **common)

    if family == "llama":
        d, h = k.int("hidden_size"), k.int("num_attention_heads")
        kv = k.int("num_key_value_heads") if k.has("num_key_value_heads") else h
        if h % kv:
            raise UnsupportedModelError(f"{source}: num_attention_heads={h} is not a multiple "
                                        f"of num_key_value_heads={kv}")
        head_dim = _heads(k, d, h, "head_dim")
        if head_dim % 2:
            raise k.unsupported("head_dim", head_dim, "an even number (RoPE pairs halves)")
        return ModelConfig(
            arch="llama", vocab_size=k.int("vocab_size"), d_model=d,
            n_layers=k.int("num_hidden_layers"), n_heads=h, n_kv_heads=kv, head_dim=head_dim,
            d_ff=k.int("intermediate_size"), max_positions=k.int("max_position_embeddings"),
            norm_eps=k.float("rms_norm_eps", 1e-6),
            activation=_activation(k, "hidden_act", "silu", "llama"),
            tie_embeddings=k.bool("tie_word_embeddings", False), rope_theta=_rope_theta(k),
            attn_bias=k.bool("attention_bias", False), mlp_bias=k.bool("mlp_bias", False),
            **common)

    # bert
    d, h = k.int("hidden_size"), k.int("num_attention_heads")
    k.require("position_embedding_type", ("absolute",), "absolute", "'absolute'")
    if k.bool("is_decoder", False):
        raise k.unsupported("is_decoder", True, "false (BERT runs as an encoder)")
    return ModelConfig(
        arch="bert", vocab_size=k.int("vocab_size"), d_model=d,
        n_layers=k.int("num_hidden_layers"), n_heads=h, n_kv_heads=h,
        head_dim=_heads(k, d, h, None), d_ff=k.int("intermediate_size"),
        max_positions=k.int("max_position_embeddings"), norm_eps=k.float("layer_norm_eps", 1e-12),
        activation=_activation(k, "hidden_act", "gelu", "bert"),
        tie_embeddings=k.bool("tie_word_embeddings", True),
        type_vocab_size=k.int("type_vocab_size", 2), attn_bias=True, mlp_bias=True, **common)
