"""Checkpoint files: safetensors round trips, shards, config.json, tokenizer.json, bad input.

Real files in pytest's tmp_path; no mocks. Every bad input must raise CheckpointError or
UnsupportedModelError whose message names the file (or key) and the problem.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from sdk import (CheckpointError, ReferenceModel, UnsupportedModelError, load_checkpoint,
                 load_config, load_tokenizer, parse_config, save_checkpoint, save_safetensors)
from sdk.checkpoint import SafetensorsFile
from sdk.tiny import tiny_config
from vp.spec import numerics


def _sample_tensors():
    rng = np.random.default_rng(7)
    return {
        "f32": rng.normal(size=(3, 5)).astype(np.float32),
        "f16": rng.normal(size=(4,)).astype(np.float16),
        "f64": rng.normal(size=(2, 2)).astype(np.float64),
        "i8": rng.integers(-128, 128, size=(2, 3, 4)).astype(np.int8),
        "i64": np.arange(5, dtype=np.int64),
        "u8": np.arange(7, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "bf16": numerics.to_bf16(rng.normal(size=(6,)).astype(np.float32)),
    }


# ------------------------------------------------------------------------- round trips

def test_round_trip_every_dtype(tmp_path):
    tensors = _sample_tensors()
    path = save_safetensors(tmp_path / "t.safetensors", tensors, {"note": "hi"},
                            dtypes={"bf16": "BF16"})
    ck = load_checkpoint(path)
    assert sorted(ck) == sorted(tensors)
    assert ck.metadata == {"note": "hi"}
    for name, a in tensors.items():
        b = ck[name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        assert np.array_equal(a, b), name
    assert ck.info("bf16").dtype == "BF16" and ck.info("i8").dtype == "I8"
    for name in tensors:                                        # each tensor aligned to its
        assert ck.info(name).offset % ck[name].dtype.itemsize == 0, name   # element size
    assert np.array_equal(ck.fp32("bf16"), numerics.from_bf16(tensors["bf16"]))
    assert np.array_equal(ck.fp32("f16"), tensors["f16"].astype(np.float32))
    with pytest.raises(CheckpointError, match="'i8'.*float"):
        ck.fp32("i8")


def test_tensors_are_read_only_views_of_one_map(tmp_path):
    path = save_safetensors(tmp_path / "t.safetensors", {"w": np.ones((64, 64), np.float32)})
    ck = load_checkpoint(path)
    w = ck["w"]
    assert not w.flags.writeable
    base = w
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    with open(path, "rb") as f:                                 # header padded to 8 bytes,
        n = struct.unpack("<Q", f.read(8))[0]                   # tensors aligned
    assert n % 8 == 0 and ck.info("w").offset % 8 == 0


def test_interoperates_with_the_safetensors_library(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tensors = {k: v for k, v in _sample_tensors().items() if k != "bf16"}
    mine = save_safetensors(tmp_path / "mine.safetensors", tensors)
    theirs = st.load_file(str(mine))
    for name, a in tensors.items():
        assert np.array_equal(theirs[name], a), name
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"format": "np"})
    ck = load_checkpoint(tmp_path / "theirs.safetensors")
    assert ck.metadata == {"format": "np"}
    for name, a in tensors.items():
        assert np.array_equal(ck[name], a), name


def test_reads_bf16_written_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    st_torch.save_file({"w": x}, str(tmp_path / "b.safetensors"))
    ck = load_checkpoint(tmp_path / "b.safetensors")
    assert ck["w"].dtype == np.uint16
    assert np.array_equal(ck.fp32("w"), x.float().numpy())


def test_sharded_round_trip(tmp_path):
    tensors = {f"layer.{i}.w": np.full((16, 16), i, np.float32) for i in range(5)}
    files = save_checkpoint(tmp_path, tensors, max_shard_bytes=2 * 16 * 16 * 4)
    names = sorted(p.name for p in files)
    assert names == ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json"]
    ck = load_checkpoint(tmp_path)
    assert len(ck.files) == 3 and sorted(ck) == sorted(tensors)
    for name, a in tensors.items():
        assert np.array_equal(ck[name], a)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 5 * 16 * 16 * 4


def test_sharded_tiny_model_equals_single_file(tiny_dir, prompts):
    one = ReferenceModel.from_pretrained(tiny_dir("llama"))
    sharded_dir = tiny_dir("llama", max_shard_bytes=40_000)
    assert (sharded_dir / "model.safetensors.index.json").is_file()
    sharded = ReferenceModel.from_pretrained(sharded_dir)
    ids = [one.tokenizer.encode(p) for p in prompts]
    assert np.array_equal(one.prefill(ids), sharded.prefill(ids))


def test_bf16_checkpoint_is_the_rounded_fp32_model(tiny_dir, prompts):
    """BF16 storage loads as exactly the bf16-rounded fp32 weights."""
    bf = ReferenceModel.from_pretrained(tiny_dir("gpt2", weights_dtype="BF16"))
    ck = load_checkpoint(tiny_dir("gpt2"))
    rounded = {n: numerics.from_bf16(numerics.to_bf16(np.array(ck[n]))) for n in ck}
    ref = ReferenceModel(load_config(tiny_dir("gpt2")), rounded)
    ids = [bf.tokenizer.encode(p) for p in prompts]
    assert np.array_equal(bf.prefill(ids), ref.prefill(ids))


# ------------------------------------------------------------------ bad safetensors files

def _write_raw(path, header, data=b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


GOOD_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("case, match", [
    ("short", r"truncated header.*3 bytes"),
    ("length_past_end", r"truncated header: header length 1000 bytes"),
    ("huge_length", r"corrupt header: header length .* exceeds"),
    ("not_json", r"corrupt header: not valid UTF-8 JSON"),
    ("not_object", r"corrupt header: expected a JSON object, got list"),
    ("bad_dtype", r"tensor 'w' has unsupported dtype 'F8_E4M3'"),
    ("bad_shape", r"tensor 'w' has shape \[-1\]"),
    ("bad_offsets", r"tensor 'w' has data_offsets \[8, 0\]"),
    ("size_mismatch", r"tensor 'w' \(F32 \[3\]\) needs 12 bytes but data_offsets"),
    ("outside", r"tensor 'w': data_offsets \[0, 8\] lie outside the file.*4 bytes"),
    ("overlap", r"tensors 'a' and 'b' overlap"),
    ("missing_field", r"tensor 'w' needs dtype, shape and data_offsets"),
    ("bad_metadata", r"__metadata__ must map strings to strings"),
])
def test_bad_safetensors_files(tmp_path, case, match):
    p = tmp_path / "bad.safetensors"
    if case == "short":
        p.write_bytes(b"\x01\x02\x03")
    elif case == "length_past_end":
        p.write_bytes(struct.pack("<Q", 1000) + b"{}")
    elif case == "huge_length":
        p.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    elif case == "not_json":
        _write_raw(p, b"{not json")
    elif case == "not_object":
        _write_raw(p, [1, 2])
    elif case == "bad_dtype":
        _write_raw(p, {"w": {**GOOD_ENTRY, "dtype": "F8_E4M3"}}, bytes(8))
    elif case == "bad_shape":
        _write_raw(p, {"w": {**GOOD_ENTRY, "shape": [-1]}}, bytes(8))
    elif case == "bad_offsets":
        _write_raw(p, {"w": {**GOOD_ENTRY, "data_offsets": [8, 0]}}, bytes(8))
    elif case == "size_mismatch":
        _write_raw(p, {"w": {**GOOD_ENTRY, "shape": [3]}}, bytes(8))
    elif case == "outside":
        _write_raw(p, {"w": GOOD_ENTRY}, bytes(4))
    elif case == "overlap":
        _write_raw(p, {"a": GOOD_ENTRY, "b": {**GOOD_ENTRY, "data_offsets": [4, 12]}}, bytes(12))
    elif case == "missing_field":
        _write_raw(p, {"w": {"dtype": "F32"}}, bytes(8))
    elif case == "bad_metadata":
        _write_raw(p, {"__metadata__": {"a": 1}, "w": GOOD_ENTRY}, bytes(8))
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(p)
    assert str(e.value).startswith(str(p)), "the message must name the file"


def test_truncated_tiny_weights_name_the_file(tiny_copy):
    d = tiny_copy("gpt2")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor .* outside the file"):
        ReferenceModel.from_pretrained(d)


def test_missing_files(tmp_path, tiny_copy):
    with pytest.raises(CheckpointError, match="no such model directory"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no such file"):
        SafetensorsFile(tmp_path / "nope.safetensors")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"no model\.safetensors .*pytorch_model\.bin"):
        load_checkpoint(tmp_path)
    d = tiny_copy("llama")
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: no such file"):
        ReferenceModel.from_pretrained(d)


def test_bad_shard_index(tmp_path):
    save_checkpoint(tmp_path, {"a": np.ones(64, np.float32), "b": np.ones(64, np.float32)},
                    max_shard_bytes=256)
    index = tmp_path / "model.safetensors.index.json"
    doc = json.loads(index.read_text())

    doc["weight_map"]["c"] = "model-00009-of-00009.safetensors"
    index.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"index\.json: names shard 'model-00009-of-"
                                              r"00009\.safetensors'.*does not exist"):
        load_checkpoint(tmp_path)

    doc["weight_map"]["c"] = doc["weight_map"]["a"]
    index.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"tensor 'c' is mapped to .* no such tensor"):
        load_checkpoint(tmp_path)

    doc["weight_map"]["c"] = "../elsewhere.safetensors"
    index.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="must be a plain file name"):
        load_checkpoint(tmp_path)

    index.write_text("{")
    with pytest.raises(CheckpointError, match=r"index\.json: corrupt index"):
        load_checkpoint(tmp_path)
    index.write_text('{"metadata": {}}')
    with pytest.raises(CheckpointError, match="weight_map"):
        load_checkpoint(tmp_path)


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="declared BF16"):
        save_safetensors(tmp_path / "x.safetensors", {"w": np.ones(2, np.float32)},
                         dtypes={"w": "BF16"})
    with pytest.raises(ValueError, match="cannot store"):
        save_safetensors(tmp_path / "x.safetensors", {"w": np.ones(2, np.complex64)})
    with pytest.raises(ValueError, match="invalid tensor name"):
        save_safetensors(tmp_path / "x.safetensors", {"__metadata__": np.ones(2, np.float32)})
    assert not list(tmp_path.iterdir()), "nothing half-written is left behind"


def test_weights_that_do_not_fit_the_config(tiny_dir):
    ck = load_checkpoint(tiny_dir("llama"))
    cfg = load_config(tiny_dir("llama"))
    bad = dict(ck)
    bad["model.layers.1.mlp.up_proj.weight"] = np.zeros((7, 64), np.float32)
    with pytest.raises(CheckpointError, match=r"'model\.layers\.1\.mlp\.up_proj\.weight' has "
                                              r"shape \(7, 64\), expected \(128, 64\)"):
        ReferenceModel(cfg, bad)
    del bad["lm_head.weight"]
    bad["model.layers.1.mlp.up_proj.weight"] = ck["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensor 'lm_head\.weight'.*"
                                              r"tie_word_embeddings=false"):
        ReferenceModel(cfg, bad)
    del bad["model.norm.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensor 'norm\.weight'"):
        ReferenceModel(cfg, bad)


# ---------------------------------------------------------------------------- config.json

def test_config_fields_from_hf_keys():
    g = parse_config(tiny_config("gpt2"))
    assert (g.arch, g.d_model, g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim, g.d_ff,
            g.max_positions, g.activation, g.tie_embeddings, g.rope_theta) == \
        ("gpt2", 64, 2, 4, 4, 16, 256, 128, "gelu_tanh", True, None)
    assert g.bos_token_id == g.eos_token_id == 299 and g.causal
    ll = parse_config(tiny_config("llama"))
    assert (ll.arch, ll.n_heads, ll.n_kv_heads, ll.head_dim, ll.d_ff, ll.activation,
            ll.tie_embeddings, ll.rope_theta, ll.norm_eps) == \
        ("llama", 4, 2, 16, 128, "silu", False, 10000.0, 1e-6)
    # the transformers 4.x spelling of the RoPE base is accepted too
    old = {k: v for k, v in tiny_config("llama").items() if k != "rope_parameters"}
    assert parse_config({**old, "rope_theta": 5e5, "rope_scaling": None}).rope_theta == 5e5
    b = parse_config(tiny_config("bert"))
    assert (b.arch, b.activation, b.type_vocab_size, b.norm_eps, b.causal) == \
        ("bert", "gelu_erf", 2, 1e-12, False)
    with pytest.raises(Exception):
        b.d_model = 3                                           # frozen


@pytest.mark.parametrize("arch, change, match", [
    ("gpt2", {"model_type": "mistral"}, r"model_type='mistral' is not supported "
                                        r"\(supported: gpt2, llama, bert\)"),
    ("gpt2", {"activation_function": "relu"}, r"activation_function='relu' .*gelu_new"),
    ("llama", {"hidden_act": "gelu_new"}, r"hidden_act='gelu_new' .*silu"),
    ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}},
     r"rope_parameters\.rope_type='llama3' .*'default'"),
    ("llama", {"rope_scaling": {"type": "linear", "factor": 2.0}},
     r"rope_scaling\.rope_type='linear'"),
    ("llama", {"num_key_value_heads": 3}, r"num_attention_heads=4 is not a multiple of "
                                          r"num_key_value_heads=3"),
    ("bert", {"position_embedding_type": "relative_key"},
     r"position_embedding_type='relative_key' .*'absolute'"),
    ("bert", {"is_decoder": True}, r"is_decoder=True"),
    ("gpt2", {"add_cross_attention": True}, r"add_cross_attention=True"),
    ("gpt2", {"n_head": 5}, r"hidden size 64 is not a multiple of .* heads 5"),
    ("gpt2", {"n_layer": 0}, r"n_layer=0 is not supported"),
])
def test_unsupported_config_values(tmp_path, arch, change, match):
    (tmp_path / "config.json").write_text(json.dumps({**tiny_config(arch), **change}))
    with pytest.raises(UnsupportedModelError, match=match) as e:
        load_config(tmp_path)
    assert "config.json" in str(e.value)


@pytest.mark.parametrize("text, match", [
    ("{", r"config\.json: not valid JSON"),
    ("[]", r"config\.json: expected a JSON object"),
    ('{"hidden_size": 64}', r"missing 'model_type'"),
    ('{"model_type": "gpt2", "n_head": 4}', r"missing required key 'n_embd'"),
    ('{"model_type": "gpt2", "n_embd": "64"}', r"'n_embd' must be an integer"),
])
def test_malformed_config(tmp_path, text, match):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_config(tmp_path)


# ------------------------------------------------------------------------- tokenizer.json

@pytest.mark.parametrize("arch, first, bos, eos, pad", [
    ("gpt2", None, 299, 299, None), ("llama", 1, 1, 2, None), ("bert", 2, 2, 3, 0)])
def test_tokenizer_round_trip_and_special_ids(tiny_dir, arch, first, bos, eos, pad):
    tok = load_tokenizer(tiny_dir(arch))
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (bos, eos, pad, 300)
    text = "The chip splits a transformer layer in two."
    ids = tok.encode(text)
    if first is not None:
        assert ids[0] == first
    assert tok.decode(ids) == (text.lower() if arch == "bert" else text)
    assert all(tok.decode([i]) is not None for i in range(tok.vocab_size))   # every id decodes
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])


def test_tokenizer_matches_transformers(tiny_dir, prompts):
    transformers = pytest.importorskip("transformers")
    for arch in ("gpt2", "llama", "bert"):
        hf = transformers.AutoTokenizer.from_pretrained(tiny_dir(arch))
        tok = load_tokenizer(tiny_dir(arch))
        for p in prompts:
            assert hf(p)["input_ids"] == tok.encode(p), (arch, p)


def test_bad_tokenizer_files(tiny_copy):
    d = tiny_copy("gpt2")
    (d / "tokenizer.json").write_text('{"model": 3}')
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: corrupt or unsupported"):
        load_tokenizer(d)
    (d / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: no such file"):
        load_tokenizer(d)
    model = ReferenceModel.from_pretrained(d)                   # weights load without it
    assert model.tokenizer is None
    with pytest.raises(ValueError, match="needs a tokenizer"):
        model.prefill(["text"])


def test_tiny_checkpoints_are_reproducible(tiny_dir, tmp_path):
    from sdk import write_tiny_checkpoint
    for arch in ("gpt2", "llama", "bert"):
        again = write_tiny_checkpoint(tmp_path / arch, arch, seed=0)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            assert (again / name).read_bytes() == (tiny_dir(arch) / name).read_bytes(), name
    other = write_tiny_checkpoint(tmp_path / "s1", "gpt2", seed=1)
    assert (other / "model.safetensors").read_bytes() != \
        (tiny_dir("gpt2") / "model.safetensors").read_bytes()
