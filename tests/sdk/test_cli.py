"""``npuvp generate | embed | compile | demo`` in process (``vp.cli.main``), on tiny models.

Every result is checked against the numpy reference (tokens equal, embeddings equal bit for
bit through JSON); every user error must exit 2 with one line naming the problem.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdk import ReferenceModel
from vp.cli import main
from vp.spec import isa

#: One-layer models keep each run well under a second.
ONE_LAYER = {"gpt2": {"n_layer": 1}, "llama": {"num_hidden_layers": 1},
             "bert": {"num_hidden_layers": 1}}
PROMPTS = ["The virtual board models a chip", "hello"]


@pytest.fixture
def model(tiny_dir):
    """model(arch) -> path of a one-layer tiny checkpoint."""
    return lambda arch: str(tiny_dir(arch, **ONE_LAYER[arch]))


def npuvp(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def user_error(capsys, *argv) -> str:
    """Run a command that must fail as a user error; returns its one-line message."""
    rc, out, err = npuvp(capsys, *argv)
    assert rc == 2, (out, err)
    assert err.startswith(f"npuvp {argv[0]}: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_json_equals_the_reference(capsys, model, arch):
    rc, out, err = npuvp(capsys, "generate", "--model", model(arch), "--prompt", PROMPTS[0],
                         "--prompt", PROMPTS[1], "--max-new-tokens", 5, "--json")
    assert rc == 0 and err == ""
    doc = json.loads(out)                                      # exactly one JSON object
    ref = ReferenceModel.from_pretrained(model(arch))
    assert doc["tokens"] == ref.generate_greedy(PROMPTS, 5)
    assert doc["text"] == [ref.tokenizer.decode(t) for t in doc["tokens"]]
    report = doc["report"]
    assert (report["batch"], report["new_tokens"], report["steps"]) == (2, 10, 5)
    assert report["placement"] == "afd" and report["total_ps"] == sum(report["step_ps"]) > 0


def test_generate_prompt_ids_on_the_unified_board(capsys, model):
    ids = [[1, 2, 3], [40, 41]]
    rc, out, _ = npuvp(capsys, "generate", "--model", model("gpt2"), "--prompt-ids", "1,2,3",
                       "--prompt-ids", "40, 41", "--max-new-tokens", 3, "--board", "unified",
                       "--placement", "unified")
    assert rc == 0
    expected = ReferenceModel.from_pretrained(model("gpt2")).generate_greedy(ids, 3)
    assert f"prompt 0: {ids[0]!r}" in out and f"prompt 1: {ids[1]!r}" in out
    assert f"ids:  {expected[0]}" in out and f"ids:  {expected[1]}" in out
    assert "board unified-16 (unified, fp32), batch 2" in out and "tokens/s" in out


def test_embed_json_is_bit_exact(capsys, model):
    texts = ["A mesh network on chip", "hello"]
    rc, out, _ = npuvp(capsys, "embed", "--model", model("bert"), "--json", *texts)
    assert rc == 0
    doc = json.loads(out)
    got = np.array(doc["embeddings"], np.float32)
    want = ReferenceModel.from_pretrained(model("bert")).embed(texts).astype(np.float32)
    assert got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert doc["report"]["batch"] == 2 and doc["report"]["new_tokens"] == 0

    rc, out, _ = npuvp(capsys, "embed", "--model", model("bert"), texts[1])
    assert rc == 0 and f"{want.shape[1]} dims" in out and "utilisation" in out


def test_compile_writes_programs_packets_and_plan(capsys, model, tmp_path):
    out_dir = tmp_path / "out"
    rc, out, _ = npuvp(capsys, "compile", "--model", model("llama"), "-o", out_dir,
                       "--prompt-tokens", 5, "--batch", 2, "--dtype", "bf16")
    assert rc == 0 and "prefill" in out and "decode" in out
    plan = json.loads((out_dir / "plan.json").read_text())
    assert (plan["dtype"], plan["placement"], plan["board"]) == ("bf16", "afd", "afd-8ca-8cf")
    assert plan["model"]["arch"] == "llama" and plan["max_batch"] == 2
    assert "HBM plan on afd-8ca-8cf" in (out_dir / "memory_map.txt").read_text()
    schedule = (out_dir / "schedule.txt").read_text()
    for step in ("prefill", "decode"):
        d = out_dir / step
        cores = sorted(int(p.stem[4:]) for p in d.glob("core*.bin"))
        assert cores == list(range(16))
        assert plan["steps"][step]["instructions"] > 0
        for cid in cores:                     # the listing is the binary's disassembly
            binary = (d / f"core{cid}.bin").read_bytes()
            listing = (d / f"core{cid}.s").read_text()
            assert listing == isa.disassemble(isa.INSTRUCTIONS, binary,
                                              base=plan["hbm"]["programs"][str(cid)])
            assert plan["steps"][step]["program_bytes"][str(cid)] == len(binary)
            assert listing.rstrip().endswith("END")
        assert any("GEMM" in (d / f"core{c}.s").read_text() for c in cores)
        packets = (d / "packets.s").read_text()
        assert packets.count("LAUNCH") == 16 and "WAIT_CORES" in packets
        assert packets == isa.disassemble(isa.PACKETS, (d / "packets.bin").read_bytes())
        assert f"{step}: " in schedule
    assert "barriers of cores 0-15" in schedule and "core 15 cf" in schedule


def test_compile_an_encoder(capsys, model, tmp_path):
    rc, _, _ = npuvp(capsys, "compile", "--model", model("bert"), "-o", tmp_path,
                     "--board", "unified", "--placement", "unified")
    assert rc == 0
    assert (tmp_path / "encode" / "packets.bin").is_file()
    assert not (tmp_path / "decode").exists()


def test_demo_is_bit_exact(capsys):
    rc, out, _ = npuvp(capsys, "demo", "--arch", "llama", "--max-new-tokens", 4)
    assert rc == 0
    assert "bit-exact with the numpy reference: yes" in out and "tokens/s" in out


def test_user_errors_are_one_clear_line(capsys, model, tiny_copy, tmp_path):
    gen = ("generate", "--model", model("gpt2"))
    assert "no such model directory" in user_error(
        capsys, "generate", "--model", tmp_path / "nope", "--prompt", "x")
    broken = tiny_copy("gpt2")
    (broken / "config.json").write_text("{not json")
    assert "not valid JSON" in user_error(capsys, "generate", "--model", broken, "--prompt", "x")
    (broken / "config.json").write_text('{"model_type": "t5"}')
    assert "model_type='t5' is not supported" in user_error(
        capsys, "embed", "--model", broken, "x")
    assert "placement 'afd' needs CA (attention) and CF (FFN) cores" in user_error(
        capsys, *gen, "--board", "unified", "--placement", "afd", "--prompt", "x")
    assert "exceed the context of 128 positions" in user_error(
        capsys, *gen, "--prompt-ids", ",".join(["7"] * 126), "--max-new-tokens", 4)
    assert "outside the vocabulary" in user_error(capsys, *gen, "--prompt-ids", "5,300")
    assert "unknown scheme 'pcie'" in user_error(capsys, *gen, "--device", "pcie://0",
                                                 "--prompt", "x")
    assert "cannot be combined with --device grpc://127.0.0.1:1" in user_error(
        capsys, *gen, "--device", "grpc://127.0.0.1:1", "--board", "afd", "--prompt", "x")
    assert "at least one prompt" in user_error(capsys, *gen)
    assert "generate needs a decoder" in user_error(
        capsys, "generate", "--model", model("bert"), "--prompt", "x")
    assert "unsupported dtype 'fp16'" in user_error(
        capsys, "compile", "--model", model("gpt2"), "-o", tmp_path / "o", "--dtype", "fp16")
    assert "the context is 128" in user_error(
        capsys, "compile", "--model", model("gpt2"), "-o", tmp_path / "o",
        "--prompt-tokens", 128)
    assert "no such board file" in user_error(capsys, *gen, "--board", tmp_path / "b.yaml",
                                              "--prompt", "x")
    # no board was left open by the failures above
    rc, out, _ = npuvp(capsys, *gen, "--prompt", "x", "--max-new-tokens", 1, "--json")
    assert rc == 0 and len(json.loads(out)["tokens"][0]) == 1


def test_bad_prompt_ids_are_a_usage_error(capsys, model):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--model", model("gpt2"), "--prompt-ids", "1,x"])
    assert exc.value.code == 2
    assert "not a comma-separated list of token ids" in capsys.readouterr().err


def test_only_the_sessions_own_checks_become_usage_errors():
    from sdk.cli import UsageError, _checked
    from sdk.runtime import Session

    with pytest.raises(UsageError, match="expected a list of prompts"):
        _checked(Session._ids, None, "a string, not a list")
    with pytest.raises(ValueError) as exc:                    # a bug deeper down stays a bug
        _checked(np.add, np.zeros(2), np.zeros(3))
    assert not isinstance(exc.value, UsageError)
