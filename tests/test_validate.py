"""npuvp validate: every check passes on the shipped models, the output has the documented
shape, and each kind of check fails when the model (or the formula it is compared with) is
wrong."""

from __future__ import annotations

import json

import pytest

import models.core
import models.core_timing
import models.stats
from models.dma_engine import DmaEngines
from models.hbm_timing import HbmTiming
from models.noc import Noc
from vp import validate
from vp.kernel import Simulator
from vp.spec.board_config import load_board
from vp.validation import gemm as gemm_mod
from vp.validation.check import Check
from vp.validation.conservation import conservation_checks
from vp.validation.memory import hbm_checks, noc_checks
from vp.validation.roofline import roofline_checks

KEYS = {"check", "expected", "measured", "error", "passed"}


@pytest.fixture(autouse=True)
def no_simulator_left():
    assert Simulator._active is None
    yield
    assert Simulator._active is None, "a check left its simulator open"


@pytest.fixture(scope="module")
def quick_checks():
    return validate.run_checks(quick=True)


@pytest.fixture(scope="module")
def cfg():
    return load_board("afd")


def failures(checks: list[Check]) -> str:
    return "\n".join(f"{c.check}: expected {c.expected}, measured {c.measured}, error {c.error}"
                     f" ({c.detail})" for c in checks if not c.passed)


def named(checks: list[Check], prefix: str) -> list[Check]:
    rows = [c for c in checks if c.check.startswith(prefix)]
    assert rows, f"no check starts with {prefix!r}"
    return rows


# -- the shipped models pass -------------------------------------------------------------------

def test_quick_run_passes_every_check(quick_checks):
    assert quick_checks
    assert all(c.passed for c in quick_checks), "failed checks:\n" + failures(quick_checks)


def test_quick_run_covers_every_kind_of_check(quick_checks):
    for prefix in ("gemm ws ", "gemm pipelined ", "hbm row miss", "hbm sequential",
                   "hbm random", "noc zero-load", "noc latency at", "noc saturation knee",
                   "roofline ca GEMM", "roofline cf SOFTMAX", "func bytes: hbm.bytes_read",
                   "func energy: total", "func utilisation: ca cores"):
        named(quick_checks, prefix)
    gemm = [c for c in quick_checks if c.check.startswith("gemm ")]
    assert len({c.check for c in gemm}) == len(gemm) >= 20      # one row per case


def test_json_has_the_documented_keys(quick_checks):
    rows = validate.to_json(quick_checks)
    assert len(rows) == len(quick_checks)
    for row in rows:
        assert KEYS <= set(row) <= KEYS | {"detail"}
        assert isinstance(row["passed"], bool) and isinstance(row["check"], str)
    json.dumps(rows, allow_nan=False)                            # strict JSON


def test_table_lists_every_check_and_a_summary(quick_checks):
    table = validate.format_table(quick_checks)
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["check", "expected", "measured", "error", "result"]
    assert len(lines) == len(quick_checks) + 3
    assert all(c.check in table for c in quick_checks)
    assert lines[-1] == f"{len(quick_checks)} checks, {len(quick_checks)} passed, 0 failed"


def test_main_prints_and_returns_the_verdict(monkeypatch, capsys):
    ok = Check("a", 1, 1, 0.0, True, "units")
    bad = Check("b", 2, 3, 0.5, False, "units")
    monkeypatch.setattr(validate, "run_checks", lambda quick=False: [ok])
    assert validate.main(False) == 0
    assert "PASS" in capsys.readouterr().out
    monkeypatch.setattr(validate, "run_checks", lambda quick=False: [ok, bad])
    assert validate.main(True) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r["passed"] for r in rows] == [True, False]
    assert validate.main(False) == 1
    assert "FAIL" in capsys.readouterr().out


def test_a_model_that_raises_is_a_failed_row_not_a_crash(monkeypatch):
    def broken(_configs):
        raise RuntimeError("model bug")
    monkeypatch.setattr(gemm_mod, "_Rig", broken)
    monkeypatch.setattr(validate, "_groups", lambda cfg: (("gemm", gemm_mod.gemm_checks),))
    rows = validate.run_checks(quick=True)
    assert [(r.check, r.passed) for r in rows] == [("gemm checks", False)]
    assert "model bug" in rows[0].detail


# -- the checks can fail ---------------------------------------------------------------------

def test_gemm_check_fails_when_the_model_uses_another_formula(monkeypatch):
    real = models.core.gemm_cycles
    monkeypatch.setattr(models.core, "gemm_cycles",
                        lambda m, n, k, r, c, mode: real(m, n, k, r, c, mode) + (mode == "ws"))
    rows = gemm_mod.gemm_checks(quick=True)
    assert all(not c.passed for c in rows if " ws " in c.check)
    assert all(c.passed for c in rows if " pipelined " in c.check)


def test_gemm_check_fails_against_a_wrong_formula(monkeypatch):
    # SCALE-Sim's formula without the -2: the comparison is with the transcription in
    # vp/validation, not with the model's own formula.
    monkeypatch.setattr(gemm_mod, "formula_cycles",
                        lambda m, n, k, r, c, mode: -(-k // r) * -(-n // c) * (2 * r + c + m))
    rows = gemm_mod.gemm_checks(quick=True)
    assert not any(c.passed for c in rows if " ws " in c.check)


def test_roofline_fails_when_the_vector_pipeline_is_negative(monkeypatch, cfg):
    monkeypatch.setattr(models.core_timing, "VECTOR_PIPELINE_CYCLES", -64)
    rows = roofline_checks(cfg, quick=True)
    assert not named(rows, "roofline cf GELU")[0].passed
    assert named(rows, "roofline cf GEMM fp32")[0].passed


def test_hbm_latency_check_fails_when_trp_is_perturbed(monkeypatch, cfg):
    real = HbmTiming.q
    monkeypatch.setattr(HbmTiming, "q",
                        lambda self, name: real(self, name) * (2 if name == "tRP" else 1))
    rows = hbm_checks(cfg, quick=True)
    assert not named(rows, "hbm row miss, to last byte")[0].passed
    assert not named(rows, "hbm row miss, first data")[0].passed
    assert named(rows, "hbm row hit")[0].passed


def test_noc_zero_load_check_fails_with_an_extra_flit(monkeypatch, cfg):
    real = Noc.flits
    monkeypatch.setattr(Noc, "flits", lambda self, nbytes: real(self, nbytes) + 1)
    rows = noc_checks(cfg, quick=True)
    assert not any(c.passed for c in named(rows, "noc zero-load"))


def test_byte_conservation_fails_when_dma_reads_twice(monkeypatch, cfg):
    real = DmaEngines._move

    def twice(self, src, dst, nbytes, offset_ps):
        real(self, src, dst, nbytes, offset_ps)
        return real(self, src, dst, nbytes, offset_ps)

    monkeypatch.setattr(DmaEngines, "_move", twice)
    rows = conservation_checks(cfg, quick=True)
    assert not named(rows, "func bytes: hbm.bytes_read")[0].passed
    assert named(rows, "func work: Σ cores MACs")[0].passed


def test_energy_conservation_fails_when_an_action_is_mispriced(monkeypatch, cfg):
    real = models.stats.core_energy_pj

    def wrong(c, e):
        out = real(c, e)
        out["mac"] *= 1.01
        return out

    monkeypatch.setattr(models.stats, "core_energy_pj", wrong)
    rows = conservation_checks(cfg, quick=True)
    assert not named(rows, "func energy: mac")[0].passed
    assert not named(rows, "func energy: total = recomputation")[0].passed
    assert named(rows, "func energy: total = Σ actions + static")[0].passed
