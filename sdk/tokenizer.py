"""``tokenizer.json`` through the ``tokenizers`` library (the Rust tokenizers behind
Hugging Face's fast tokenizers), with the model's special token ids.

Special ids (bos / eos / pad) come from, in order: ``config.json`` (``bos_token_id``, ...),
then ``generation_config.json``, then ``tokenizer_config.json`` / ``special_tokens_map.json``
token strings looked up in the vocabulary, then well-known token strings
(``<|endoftext|>``, ``<s>``, ``</s>``, ``[CLS]``, ``[SEP]``, ``[PAD]``). Any may be None.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sdk.checkpoint import CheckpointError

__all__ = ["Tokenizer", "load_tokenizer", "TOKENIZER_FILE"]

TOKENIZER_FILE = "tokenizer.json"

_WELL_KNOWN = {
    "bos": ("<|endoftext|>", "<s>", "<|begin_of_text|>", "[CLS]"),
    "eos": ("<|endoftext|>", "</s>", "<|end_of_text|>", "<|eot_id|>", "[SEP]"),
    "pad": ("<pad>", "[PAD]", "<|pad|>"),
}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    return doc if isinstance(doc, dict) else {}


@dataclass
class Tokenizer:
    """A loaded tokenizer: ``encode`` / ``decode`` plus the special ids (None if unknown)."""
    backend: object             # tokenizers.Tokenizer
    path: Path
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None

    @property
    def vocab_size(self) -> int:
        """Number of ids, added (special) tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Text -> token ids (with the tokenizer's post-processor, e.g. BOS or [CLS]/[SEP],
        unless ``add_special_tokens`` is false)."""
        if not isinstance(text, str):
            raise TypeError(f"encode: expected a str, got {type(text).__name__}")
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def encode_batch(self, texts: Sequence[str], *,
                     add_special_tokens: bool = True) -> list[list[int]]:
        return [self.encode(t, add_special_tokens=add_special_tokens) for t in texts]

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Token ids -> text."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"decode: token id {bad[0]} out of range [0, {self.vocab_size})")
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(int(i))


def _special_id(kind: str, backend, docs: list[dict], tok_docs: list[dict]) -> int | None:
    key = f"{kind}_token_id"
    for doc in docs:
        v = doc.get(key)
        if isinstance(v, list):
            v = v[0] if v else None
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    for doc in tok_docs:
        tok = doc.get(f"{kind}_token")
        if isinstance(tok, dict):                       # {"content": "<s>", ...}
            tok = tok.get("content")
        if isinstance(tok, str) and backend.token_to_id(tok) is not None:
            return backend.token_to_id(tok)
    for tok in _WELL_KNOWN[kind]:
        if backend.token_to_id(tok) is not None:
            return backend.token_to_id(tok)
    return None


def load_tokenizer(model_dir: str | os.PathLike) -> Tokenizer:
    """Load ``tokenizer.json`` of a model directory (or the file itself)."""
    try:
        from tokenizers import Tokenizer as _Backend
    except ImportError as e:                                    # a runtime dependency
        raise ImportError("the 'tokenizers' package is required: pip install tokenizers") from e
    path = Path(model_dir)
    directory = path if path.is_dir() else path.parent
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (the SDK reads tokenizers in the "
                              f"Hugging Face fast-tokenizer format, {TOKENIZER_FILE})")
    try:
        backend = _Backend.from_file(str(path))
    except Exception as e:                                      # the Rust side raises plain
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__   # Exception types
        raise CheckpointError(f"{path}: corrupt or unsupported tokenizer file ({msg})") from None
    docs = [_read_json(directory / "config.json"), _read_json(directory / "generation_config.json")]
    tok_docs = [_read_json(directory / "tokenizer_config.json"),
                _read_json(directory / "special_tokens_map.json")]
    return Tokenizer(backend, path, *(_special_id(kind, backend, docs, tok_docs)
                                      for kind in ("bos", "eos", "pad")))
