"""The ``npuvp`` command line, run as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

from sdk import ReferenceModel, write_tiny_checkpoint
from tests.helpers.board_server import running_server
from vp.spec.board_config import load_board
from vp.spec.regmap import REGMAP

REPO = Path(__file__).resolve().parents[1]


def npuvp(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vp.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_demo_is_the_main_job():
    run = npuvp("demo")
    assert run.returncode == 0, run.stderr
    assert "wrote a tiny random gpt2 model" in run.stdout and "tokens/s" in run.stdout
    assert "bit-exact with the numpy reference: yes" in run.stdout


def test_demo_driver_example():
    run = npuvp("demo", "--driver")
    assert run.returncode == 0, run.stderr
    assert "bytes match" in run.stdout and "READ_ONLY" in run.stdout
    assert "bit-exact with the op numerics" in run.stdout


def test_generate_over_grpc(tmp_path):
    model = write_tiny_checkpoint(tmp_path / "tiny", "gpt2", n_layer=1)
    with running_server() as address:
        run = npuvp("generate", "--device", f"grpc://{address}", "--model", str(model),
                    "--prompt-ids", "5,6,7", "--max-new-tokens", "3", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["tokens"] == \
        ReferenceModel.from_pretrained(model).generate_greedy([[5, 6, 7]], 3)


def test_info_json_embedded_and_grpc():
    local = json.loads(npuvp("info", "--json").stdout)
    assert local["device_id"] == REGMAP.reg("id.ID").reset
    assert local["hbm_size"] == load_board(None).hbm.size
    with running_server() as address:
        remote = json.loads(npuvp("info", "--device", f"grpc://{address}", "--json").stdout)
    assert {k: v for k, v in remote.items() if k not in ("url", "now_ps")} == \
           {k: v for k, v in local.items() if k not in ("url", "now_ps")}


def test_regs_formats():
    md = npuvp("regs").stdout
    assert all(reg.full_name in md for reg in REGMAP.registers())
    assert "#define" in npuvp("regs", "--format", "c").stdout
    assert len(json.loads(npuvp("regs", "--format", "json").stdout)["registers"]) == len(REGMAP)


def test_serve_refuses_a_broken_board_file(tmp_path):
    bad = tmp_path / "board.yaml"
    bad.write_text("name: x\nhbm:\n  size: 1 GiB\ndma: [1, 2]\n")
    run = npuvp("serve", "--board", str(bad), "--port", "0", timeout=60)
    assert run.returncode == 2
    assert "board.yaml: dma" in run.stderr and "Traceback" not in run.stderr


def test_unknown_url_is_one_clear_line():
    run = npuvp("info", "--device", "pcie://0")
    assert run.returncode == 2 and "unknown scheme 'pcie'" in run.stderr
    assert "Traceback" not in run.stderr
