"""npuvp SDK (host side, DESIGN.md §6): Hugging Face model loading, the numpy reference
forward pass that defines the numerics, and tiny random checkpoints.

Layering (DESIGN.md §2): the SDK imports only ``vp.spec``, ``vp.proto`` and ``drivers``.

* :mod:`sdk.checkpoint` — safetensors reader (memory-mapped, numpy only) and writer.
* :mod:`sdk.model_config` — ``config.json`` -> :class:`ModelConfig` (GPT-2, LLaMA, BERT).
* :mod:`sdk.tokenizer` — ``tokenizer.json`` through the ``tokenizers`` library.
* :mod:`sdk.reference` — :class:`ReferenceModel`: prefill / decode / greedy generation with a
  per-sequence :class:`KVCache`, and mean-pooled embeddings for encoders.
* :mod:`sdk.tiny` — :func:`write_tiny_checkpoint` for tests and the demo.
"""

from sdk.checkpoint import (Checkpoint, CheckpointError, load_checkpoint, save_checkpoint,
                            save_safetensors)
from sdk.model_config import ModelConfig, UnsupportedModelError, load_config, parse_config
from sdk.reference import KVCache, ReferenceModel, gelu_erf
from sdk.tiny import write_tiny_checkpoint
from sdk.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint", "save_safetensors",
    "ModelConfig", "UnsupportedModelError", "load_config", "parse_config",
    "KVCache", "ReferenceModel", "gelu_erf",
    "write_tiny_checkpoint",
    "Tokenizer", "load_tokenizer",
]
