"""The checked-in protobuf stubs match vp/proto/npuvp.proto (regenerate with
``python -m vp.proto.gen_proto``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools regenerates the stubs")

from vp.proto import gen_proto  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_current():
    stale = gen_proto.stale_files()
    assert not stale, (f"stale generated files {stale}: run `python -m vp.proto.gen_proto` "
                       f"after editing vp/proto/npuvp.proto")


def test_generated_stubs_are_marked_and_package_relative():
    for name in gen_proto.OUTPUTS:
        text = (gen_proto.HERE / name).read_text()
        assert text.startswith(gen_proto.MARKER), name
        assert "\nimport npuvp_pb2" not in text, name
    assert "from . import npuvp_pb2 as" in (gen_proto.HERE / "npuvp_pb2_grpc.py").read_text()


def test_check_detects_a_stale_file(monkeypatch):
    texts = gen_proto.generate()
    texts["npuvp_pb2.py"] += "# changed\n"
    assert gen_proto.stale_files(texts) == ["npuvp_pb2.py"]


def test_check_command_exits_zero_when_current():
    result = subprocess.run([sys.executable, "-m", "vp.proto.gen_proto", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_stubs_import_as_a_package():
    from vp.proto import npuvp_pb2, npuvp_pb2_grpc
    service = npuvp_pb2.DESCRIPTOR.services_by_name["Board"]
    assert service.full_name == "npuvp.v1.Board"
    assert {m.name for m in service.methods} == {"GetInfo", "RegBatch", "WriteMem", "ReadMem",
                                                 "WaitIrq", "Reset", "GetStats", "AttachShm",
                                                 "DetachShm", "WriteShm", "ReadShm"}
    assert hasattr(npuvp_pb2_grpc, "BoardStub")
