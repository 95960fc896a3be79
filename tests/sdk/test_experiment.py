"""The AFD experiment (sdk/experiment.py): the real compiler, runtime and boards in performance
mode, on reduced models (2 layers of the 7B shape) so the tests stay fast."""

from __future__ import annotations

import json

import pytest

from sdk import experiment as ex
from sdk.compiler import Plan, Target
from sdk.runtime import Session
from vp import cli
from vp.spec.board_config import BoardConfigError, parse_board

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_board(res: dict, kinds: set[str]) -> None:
    assert res["cores"] == 16
    assert set(res["utilisation"]) == kinds
    for kind, u in res["utilisation"].items():
        assert 0.0 < u <= 1.0, (kind, u)
        split = res["time_split"][kind]
        assert set(split) == {"load_store", "matrix", "vector", "stall"}
        assert all(0.0 <= v <= 1.0 for v in split.values()), split
        # busy time is at least its LOAD/STORE, matrix and vector parts
        assert u >= split["load_store"] + split["matrix"] + split["vector"] - 1e-9
    assert res["step_ms"] > 0
    assert res["tokens_per_s_per_core"] == pytest.approx(res["tokens_per_s"] / 16)
    assert res["energy_per_token_j"] > 0
    assert res["hbm_bytes_per_token"] > 0


def test_quick_json_rows_and_png(tmp_path, capsys):
    png = tmp_path / "afd.png"
    # through the command line: npuvp experiment afd ...
    assert cli.main(["experiment", "afd", "--quick", "--layers", "2", "--json",
                     "--out", str(png)]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)                       # stdout is only the JSON list
    assert isinstance(rows, list)
    assert [(r["experiment"], r["context"]) for r in rows] == \
        [(e, c) for e, _, c, _, _ in ex.configurations(quick=True)]
    for r in rows:
        assert r["shape"] == "7b" and r["layers"] == 2 and r["dtype"] == "bf16"
        for key, typ in (("context", int), ("batch", int), ("ca_cores", int), ("cf_cores", int),
                         ("flit_bytes", int), ("page_tokens", int), ("speedup", float)):
            assert isinstance(r[key], typ), key
        per_core = r["tokens_per_s_per_core"]
        assert set(per_core) == {"afd", "unified"}
        assert per_core["afd"] == r["afd"]["tokens_per_s_per_core"]
        assert r["speedup"] == pytest.approx(per_core["afd"] / per_core["unified"], rel=1e-12)
        _check_board(r["afd"], {"ca", "cf"})
        _check_board(r["unified"], {"unified"})
        if r["experiment"] != "micro_batches":
            assert r["afd"]["micro_batches"] == (2 if r["batch"] >= 2 else 1)
        assert r["unified"]["micro_batches"] == 1
        assert r["ca_cores"] + r["cf_cores"] == 16
    by = {(r["experiment"], r["ca_cores"], r["flit_bytes"], r["batch"], r["context"]): r
          for r in rows}
    # the sweeps change what they say they change
    assert by[("ca_cf", 4, 256, 8, 1024)]["afd"]["board"] == "afd-4ca-12cf-perf"
    assert by[("noc", 8, 64, 8, 1024)]["unified"]["board"] == "unified-16-flit64-perf"
    # a 4x narrower NoC slows both boards down; a longer context too
    assert by[("noc", 8, 64, 8, 1024)]["afd"]["step_ms"] > by[("grid", 8, 256, 8, 1024)]["afd"]["step_ms"]
    assert by[("grid", 8, 256, 8, 4096)]["unified"]["step_ms"] > \
        by[("grid", 8, 256, 8, 1024)]["unified"]["step_ms"]
    # one micro-batch at the same batch: the AFD board without ping-pong, unified unchanged
    one, two = (next(r for r in rows if r["experiment"] == "micro_batches"
                     and r["afd"]["micro_batches"] == m) for m in (1, 2))
    assert one["batch"] == two["batch"] == 8
    assert one["unified"] == two["unified"]
    assert one["afd"]["step_ms"] != two["afd"]["step_ms"]
    assert f"{len(rows)} rows in" in out.err        # progress and summary on stderr
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 10_000


def test_text_table_says_reduced_and_summarises(tmp_path, capsys):
    rows = ex.run(quick=True, layers=1)
    text = ex.format_table(rows)
    assert "REDUCED MODEL: 1 layers" in text
    assert "published rack-scale analogue 1.7-1.9x" in text
    assert text.count("x |") == len(rows)            # one line per row with its speedup
    png = tmp_path / "t.png"
    ex.plot(rows, str(png))
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_decode_step_context_moves_attention_time():
    """Same session, two contexts: only attention grows, so the step gets longer, the CA cores
    get busier, and the bytes per token grow by the KV cache read (fp32 K and V)."""
    config = ex.model_config("7b", layers=1)
    doc = ex.board_document("afd")
    with ex.Experiment(layers=1) as e:
        path = e.board_file(doc)
        with Session.from_config(config, f"embedded://{path}", placement="afd", dtype="bf16",
                                 max_batch=2, max_context=2048, page_tokens=1024) as s:
            short = ex.board_metrics(s.target, 2, 2, *ex.decode_step(s, 2, 1024))
            long = ex.board_metrics(s.target, 2, 2, *ex.decode_step(s, 2, 2048))
            with pytest.raises(ex.ExperimentError, match="context 4096 is outside"):
                ex.decode_step(s, 2, 4096)
            with pytest.raises(ex.ExperimentError, match="batch 3 is outside"):
                ex.decode_step(s, 3, 1024)
            assert s.kv.free_blocks == s.plan.n_blocks      # the step gave its blocks back
    assert long["step_ms"] > short["step_ms"]
    kv_per_token = 1 * 2 * config.kv_dim * 4 * (2048 - 1024)     # layers x (K, V) x fp32
    assert long["hbm_bytes_per_token"] - short["hbm_bytes_per_token"] == \
        pytest.approx(kv_per_token, rel=0.01)


def test_board_documents():
    doc = ex.board_document("afd", ca=4, cf=12, flit_bytes=64)
    board = parse_board(doc, "test")
    assert board.mode == "performance"
    assert board.cores.kinds().count("ca") == 4 and board.cores.kinds().count("cf") == 12
    assert board.noc.flit_bytes == 64 and board.name == "afd-4ca-12cf-flit64-perf"
    assert ex.board_document("unified", flit_bytes=256)["name"] == "unified-16-perf"
    with pytest.raises(ex.ExperimentError, match="sum to the board's 16 cores"):
        ex.board_document("afd", ca=4, cf=8)
    with pytest.raises(ex.ExperimentError, match="afd board only"):
        ex.board_document("unified", ca=8, cf=8)
    with pytest.raises(ex.ExperimentError, match="unknown board"):
        ex.board_document("tpu")
    with pytest.raises(BoardConfigError):
        ex.board_document("afd", flit_bytes=0)


def test_model_shapes_and_batch_fit():
    c7, c70 = ex.model_config("7b"), ex.model_config("70b")
    assert (c7.d_model, c7.n_layers, c7.n_heads, c7.n_kv_heads, c7.d_ff, c7.vocab_size) == \
        (4096, 32, 32, 32, 11008, 32000)
    assert (c70.d_model, c70.n_layers, c70.n_heads, c70.n_kv_heads, c70.d_ff) == \
        (8192, 80, 64, 8, 28672)
    assert ex.model_config("7b", layers=2).n_layers == 2
    with pytest.raises(ex.ExperimentError, match="unknown shape"):
        ex.model_config("13b")
    docs = [ex.board_document("afd"), ex.board_document("unified")]
    # 7B: 1 MiB of fp32 KV per token; 8 x 32k positions do not fit 144 GiB, 2 do
    assert ex.fit_batch(c7, docs, "bf16", 1024) == 8
    b = ex.fit_batch(c7, docs, "bf16", 32768)
    assert b % 2 == 0 and 2 <= b < 8
    board = parse_board(docs[0], "afd")
    Plan(c7, Target.from_board(board, "afd"), dtype="bf16", max_batch=b, max_context=32768,
         page_tokens=ex.PAGE_TOKENS)


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        ex.main(["--layers", "0"])
    assert exc.value.code == 2
    assert "--layers must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ex.main(["--out", "/no/such/dir/x.png"])
    assert "does not exist" in capsys.readouterr().err
