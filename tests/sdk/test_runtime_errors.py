"""Bad input to the SDK runtime: every case raises an exception whose message names the
problem, nothing is half-uploaded, and the board keeps serving.

* Loading (``Session.load``): a missing model directory or ``config.json``, corrupt weights
  (truncated file, bad header), a tensor of the wrong shape or a missing one, an unsupported
  architecture, dtype or placement, ``afd`` on a board without CA/CF cores, a model larger
  than the board's HBM, a bad device URL. The board's host interface counts the bytes written
  to HBM: a failed load writes none, and a fresh session on the same Device then generates the
  reference's tokens. A session that opened its board from a URL closes it when loading fails.
* Calls (``generate`` / ``embed``): prompts longer than the context, empty prompts, token ids
  outside the vocabulary, more prompts than ``max_batch``, text without a tokenizer, the wrong
  call for the architecture, bad sampling arguments. After each, the same session still
  generates the reference's tokens and every KV block is free again.
"""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
import yaml

import drivers
from drivers import UnknownDeviceUrl
from sdk import CheckpointError, UnsupportedModelError, load_checkpoint, save_checkpoint
from sdk.compiler import CompileError
from sdk.runtime import Session
from vp.spec.board_config import BoardConfigError, shipped_board_path
from vp.spec.units import parse_size

CHECK_IDS = [[5, 6, 7, 8, 9], [10, 11]]          # a small batch that must still work
CHECK_TOKENS = 2


def hbm_writes(dev) -> int:
    """Bytes the host has written into the board's memory so far."""
    return dev.stats()["units"]["hostif"]["mem_write_bytes"]


def assert_generates(session, model) -> None:
    """``session`` still produces the reference's greedy tokens and frees its KV blocks."""
    free = session.kv.free_blocks
    out = session.generate(CHECK_IDS, CHECK_TOKENS)
    assert out.tokens == model.generate_greedy(CHECK_IDS, CHECK_TOKENS)
    assert session.kv.free_blocks == free == session.plan.n_blocks


def assert_board_serves(dev, tiny_dir, tiny_model, **kw) -> None:
    """A fresh session of the tiny GPT-2 on ``dev`` generates the reference's tokens."""
    with Session.load(tiny_dir("gpt2"), device=dev, **kw) as s:
        assert_generates(s, tiny_model("gpt2"))


@pytest.fixture
def dev():
    """A fresh in-process AFD board (closed after the test)."""
    with drivers.open_device("embedded://") as d:
        yield d


def _set_config(d, **change):
    doc = json.loads((d / "config.json").read_text())
    doc.update(change)
    (d / "config.json").write_text(json.dumps(doc))


def _truncate(d):
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])


def _bad_header(d):
    f = d / "model.safetensors"
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    f.write_bytes(raw[:8] + b"{not json" + b" " * (n - 9) + raw[8 + n:])


def _reshape(d):
    tensors = dict(load_checkpoint(d))
    tensors["transformer.h.1.mlp.c_fc.weight"] = np.zeros((64, 7), np.float32)
    (d / "model.safetensors").unlink()
    save_checkpoint(d, tensors)


def _drop(d):
    tensors = dict(load_checkpoint(d))
    del tensors["transformer.h.0.attn.c_attn.bias"]
    (d / "model.safetensors").unlink()
    save_checkpoint(d, tensors)


BAD_CHECKPOINTS = {
    "missing config.json": (lambda d: (d / "config.json").unlink(), CheckpointError,
                            r"config\.json: no such file"),
    "truncated weights": (_truncate, CheckpointError,
                          r"model\.safetensors: tensor '.*': data_offsets .* outside the "
                          r"file.*truncated"),
    "corrupt header": (_bad_header, CheckpointError,
                       r"model\.safetensors: corrupt header: not valid UTF-8 JSON"),
    "wrong shape": (_reshape, CheckpointError,
                    r"'transformer\.h\.1\.mlp\.c_fc\.weight' has shape \(64, 7\), "
                    r"expected \(64, 256\)"),
    "missing tensor": (_drop, CheckpointError,
                       r"missing tensor '(transformer\.)?h\.0\.attn\.c_attn\.bias'"),
    "unsupported architecture": (lambda d: _set_config(d, model_type="mistral"),
                                 UnsupportedModelError,
                                 r"config\.json: model_type='mistral' is not supported "
                                 r"\(supported: gpt2, llama, bert\)"),
    "unsupported activation": (lambda d: _set_config(d, activation_function="relu"),
                               UnsupportedModelError, r"activation_function='relu'"),
}


# ------------------------------------------------------------------------------- loading

@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint(dev, tiny_copy, tiny_dir, tiny_model, case):
    damage, exc, match = BAD_CHECKPOINTS[case]
    d = tiny_copy("gpt2")
    damage(d)
    before = hbm_writes(dev)
    with pytest.raises(exc, match=match) as e:
        Session.load(d, device=dev)
    assert str(d) in str(e.value), "the message names the file"
    assert hbm_writes(dev) == before, "nothing half-uploaded"
    assert_board_serves(dev, tiny_dir, tiny_model)


def test_missing_model_directory(dev, tmp_path, tiny_dir, tiny_model):
    before = hbm_writes(dev)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "nope")) + ": no such"):
        Session.load(tmp_path / "nope", device=dev)
    assert hbm_writes(dev) == before
    assert_board_serves(dev, tiny_dir, tiny_model)


@pytest.mark.parametrize("kw, match", [
    ({"dtype": "fp16"}, r"unsupported dtype 'fp16' \(expected one of fp32, bf16, int8\)"),
    ({"placement": "pipeline"}, r"unknown placement 'pipeline' \(expected one of afd, unified\)"),
    ({"max_batch": 0}, r"max_batch .* must be positive"),
    ({"micro_batches": 3}, r"micro_batches 3: expected 1 or 2"),
    ({"micro_batches": 2, "max_batch": 1}, r"micro_batches 2: .* at most max_batch \(1\)"),
    ({"micro_batches": 2, "placement": "unified"}, r"two micro-batches .* need the afd"),
])
def test_bad_session_options(dev, tiny_dir, tiny_model, kw, match):
    before = hbm_writes(dev)
    with pytest.raises(CompileError, match=match):
        Session.load(tiny_dir("gpt2"), device=dev, **kw)
    assert hbm_writes(dev) == before
    assert_board_serves(dev, tiny_dir, tiny_model)


def test_afd_placement_on_the_unified_board(tiny_dir, tiny_model):
    with drivers.open_device("embedded://unified") as dev:
        before = hbm_writes(dev)
        with pytest.raises(CompileError, match=r"placement 'afd' needs CA \(attention\) and CF "
                                               r"\(FFN\) cores; board 'unified-16' has "
                                               r"16 UNIFIED"):
            Session.load(tiny_dir("gpt2"), device=dev, placement="afd")
        assert hbm_writes(dev) == before
        assert_board_serves(dev, tiny_dir, tiny_model, placement="unified")


@pytest.fixture
def small_hbm_board(tmp_path):
    """The AFD board with 160 MiB of HBM: room for a tiny model, not for a bigger one."""
    doc = yaml.safe_load(open(shipped_board_path("afd")))
    doc["name"], doc["hbm"]["size"] = "afd-160MiB", "160 MiB"
    path = tmp_path / "afd-160MiB.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("what", ["weights", "kv cache"])
def test_model_larger_than_hbm(small_hbm_board, tiny_dir, tiny_model, what):
    if what == "weights":               # 12.7 M parameters: 50 MiB of fp32 weights
        path, kw = tiny_dir("gpt2", n_embd=512, n_layer=4), {}
    else:                               # 1024 sequences x 128 positions of KV cache
        path, kw = tiny_dir("gpt2"), {"max_batch": 1024}
    with drivers.open_device(f"embedded://{small_hbm_board}") as dev:
        before = hbm_writes(dev)
        with pytest.raises(CompileError, match="does not fit") as e:
            Session.load(path, device=dev, **kw)
        m = re.search(r"needs ([\d.]+ [KMG]iB) of HBM .*the board 'afd-160MiB' has "
                      r"([\d.]+ [KMG]iB)", str(e.value))
        assert m, f"the message names both sizes: {e.value}"
        assert parse_size(m[1]) > parse_size(m[2]) == 160 * 2 ** 20
        assert hbm_writes(dev) == before
        assert_board_serves(dev, tiny_dir, tiny_model)          # the tiny model fits


@pytest.mark.parametrize("url, exc, match", [
    ("tcp://localhost:1234", UnknownDeviceUrl, r"unknown scheme 'tcp'"),
    ("localhost:1234", UnknownDeviceUrl, r"not of the form SCHEME://"),
    ("grpc://localhost", UnknownDeviceUrl, r"expected grpc://host:port"),
    ("grpc://127.0.0.1:1", drivers.TransportError, r"cannot connect .*127\.0\.0\.1:1"),
    ("embedded:///no/such/board.yaml", BoardConfigError, r"board\.yaml: no such board file"),
])
def test_bad_device_url(tiny_dir, url, exc, match):
    with pytest.raises(exc, match=match):
        Session.load(tiny_dir("gpt2"), device=url)


def test_failed_load_closes_the_board_it_opened(tiny_dir, tiny_model):
    """MyHDL allows one board per process: a session that opened ``embedded://`` itself and
    failed must have closed it, or the next board could not open."""
    with pytest.raises(CompileError, match="fp16"):
        Session.load(tiny_dir("gpt2"), device="embedded://", dtype="fp16")
    with pytest.raises(CompileError, match="placement 'afd'"):
        Session.load(tiny_dir("gpt2"), device="embedded://unified", placement="afd")
    with Session.load(tiny_dir("gpt2"), device="embedded://") as s:
        assert_generates(s, tiny_model("gpt2"))


# --------------------------------------------------------------------------------- calls

BAD_CALLS = {
    "prompt longer than the context": (([[7] * 129], 1), {}, ValueError,
                                       r"prompt 0: 129 tokens .*exceed the context of 128 "
                                       r"positions"),
    "prompt + new tokens beyond the context": (([[7] * 3, [7] * 120], 16), {}, ValueError,
                                               r"prompt 1: 120 tokens \+ 16 new tokens exceed "
                                               r"the context of 128 positions"),
    "empty prompt": (([[1, 2], []], 2), {}, ValueError, r"prompt 1 is empty"),
    "empty text": ((["hello", ""], 2), {}, ValueError, r"prompt 1 is empty"),
    "token id past the vocabulary": (([[1, 2], [3, 300]], 2), {}, ValueError,
                                     r"prompt 1: token id 300 is outside the vocabulary "
                                     r"\[0, 300\)"),
    "negative token id": (([[1, -4]], 2), {}, ValueError, r"token id -4 is outside"),
    "float token ids": (([[1.0, 2.5]], 2), {}, TypeError, r"token ids must be integers"),
    "too many prompts": (([[1]] * 5, 2), {}, ValueError,
                         r"5 prompts exceed the session's max_batch of 4"),
    "no prompts": (([], 2), {}, ValueError, r"no prompts"),
    "a string, not a list": (("hello", 2), {}, TypeError, r"expected a list of prompts"),
    "zero new tokens": (([[1, 2]], 0), {}, ValueError, r"max_new_tokens must be at least 1"),
    "negative temperature": (([[1, 2]], 2), {"temperature": -1.0}, ValueError, r"temperature"),
    "negative top_k": (([[1, 2]], 2), {"temperature": 1.0, "top_k": -3}, ValueError, r"top_k"),
}


@pytest.fixture
def gpt2_session(dev, tiny_dir):
    with Session.load(tiny_dir("gpt2"), device=dev) as s:
        yield s


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_generate_call(gpt2_session, tiny_model, case):
    args, kw, exc, match = BAD_CALLS[case]
    before = hbm_writes(gpt2_session.dev)
    with pytest.raises(exc, match=match):
        gpt2_session.generate(*args, **kw)
    assert hbm_writes(gpt2_session.dev) == before, "a refused call sends nothing to the board"
    assert_generates(gpt2_session, tiny_model("gpt2"))


def test_new_session_after_failed_calls(dev, tiny_dir, tiny_model):
    """A session that ran steps and refused calls leaves a board the next session can use."""
    model = tiny_model("llama")
    with Session.load(tiny_dir("llama"), device=dev, max_batch=2) as s:
        assert_generates(s, model)
        for args, _, exc, _ in (BAD_CALLS["token id past the vocabulary"],
                                BAD_CALLS["prompt longer than the context"]):
            with pytest.raises(exc):
                s.generate(*args)
        with pytest.raises(ValueError, match="3 prompts exceed the session's max_batch of 2"):
            s.generate([[1], [2], [3]], 2)
    assert_board_serves(dev, tiny_dir, tiny_model)


def test_context_limit_of_the_session(dev, tiny_dir, tiny_model):
    with Session.load(tiny_dir("gpt2"), device=dev, max_context=16, page_tokens=8) as s:
        with pytest.raises(ValueError, match=r"prompt 0: 14 tokens \+ 4 new tokens exceed the "
                                             r"context of 16 positions"):
            s.generate([[3] * 14], 4)
        assert_generates(s, tiny_model("gpt2"))


def test_embed_on_a_decoder(gpt2_session, tiny_model):
    with pytest.raises(ValueError, match=r"embed needs an encoder \(bert\); this model is gpt2"):
        gpt2_session.embed(["hello"])
    assert_generates(gpt2_session, tiny_model("gpt2"))


def test_generate_on_an_encoder(dev, tiny_dir, tiny_model):
    model = tiny_model("bert")
    with Session.load(tiny_dir("bert"), device=dev) as s:
        with pytest.raises(ValueError, match=r"generate needs a decoder .*this model is bert "
                                             r"\(use embed\)"):
            s.generate(["hello"], 2)
        with pytest.raises(ValueError, match=r"input 0: 200 tokens exceed the context of 128"):
            s.embed([[2] + [50] * 198 + [3]])
        with pytest.raises(ValueError, match=r"prompt 1 is empty"):
            s.embed(["hello", []])
        out = s.embed(["hello", "A mesh network on chip"])
        want = model.embed(["hello", "A mesh network on chip"])
        assert np.array_equal(out.embeddings.view(np.uint32), want.view(np.uint32))
        assert s.kv.free_blocks == s.plan.n_blocks


def test_text_prompt_without_a_tokenizer(dev, tiny_copy, tiny_model):
    d = tiny_copy("gpt2")
    (d / "tokenizer.json").unlink()
    with Session.load(d, device=dev) as s:
        assert s.tokenizer is None
        with pytest.raises(ValueError, match=r"text prompts need a tokenizer \(the model "
                                             r"directory has no tokenizer\.json\)"):
            s.generate(["hello"], 2)
        out = s.generate(CHECK_IDS, CHECK_TOKENS)            # token ids still work
        assert out.text is None
        assert out.tokens == tiny_model("gpt2").generate_greedy(CHECK_IDS, CHECK_TOKENS)
