"""Regenerate the Python stubs of ``npuvp.proto`` (or check that they are current).

Usage::

    python -m vp.proto.gen_proto            # rewrite npuvp_pb2.py, npuvp_pb2_grpc.py, npuvp_pb2.pyi
    python -m vp.proto.gen_proto --check    # exit 1, naming the stale files, if any differ

The stubs are produced by ``grpc_tools.protoc`` (the ``grpcio-tools`` test dependency), then
post-processed: the gRPC stub's ``import npuvp_pb2`` becomes a package-relative import so that
``vp.proto`` works as a package, and every file gets a "generated, do not edit" marker.
The output depends on the grpcio-tools version, so ``--check`` with another version reports
the files stale and says which version made them.
"""

from __future__ import annotations

import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

from vp.spec import generated

HERE = Path(__file__).resolve().parent
PROTO = "npuvp.proto"
OUTPUTS = ("npuvp_pb2.py", "npuvp_pb2_grpc.py", "npuvp_pb2.pyi")
MARKER = "# GENERATED FILE, DO NOT EDIT: made by `python -m vp.proto.gen_proto` from npuvp.proto"
_TOOLS_LINE = "# grpcio-tools {version}"


def _tools_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("grpcio-tools")
    except PackageNotFoundError:
        return "unknown"


def generate() -> dict[str, str]:
    """Run protoc on ``npuvp.proto``; returns ``{file name: text}`` of the post-processed stubs."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("gen_proto: grpcio-tools is not installed "
                         "(pip install 'npuvp[test]')") from exc
    include = str(resources.files("grpc_tools").joinpath("_proto"))
    with tempfile.TemporaryDirectory(prefix="npuvp-proto-") as out:
        status = protoc.main(["grpc_tools.protoc", f"-I{HERE}", f"-I{include}",
                              f"--python_out={out}", f"--pyi_out={out}",
                              f"--grpc_python_out={out}", str(HERE / PROTO)])
        if status != 0:
            raise SystemExit(f"gen_proto: protoc failed on {HERE / PROTO} (status {status})")
        texts = {name: (Path(out) / name).read_text(encoding="utf-8") for name in OUTPUTS}
    header = f"{MARKER}\n{_TOOLS_LINE.format(version=_tools_version())}\n"
    fixed = {}
    for name, text in texts.items():
        # protoc emits a top-level import, which only works with vp/proto on sys.path.
        text = re.sub(r"^import npuvp_pb2 as (\w+)$", r"from . import npuvp_pb2 as \1", text,
                      flags=re.M)
        fixed[name] = header + text
    return fixed


def stale_files(texts: dict[str, str] | None = None) -> list[str]:
    """Names of the generated files that are missing or differ from a fresh generation."""
    return generated.stale_files(generate() if texts is None else texts, HERE)


def _recorded_tools_version(name: str) -> str | None:
    try:
        lines = (HERE / name).read_text(encoding="utf-8").splitlines()[:2]
    except OSError:
        return None
    m = re.fullmatch(r"# grpcio-tools (\S+)", lines[1]) if len(lines) > 1 else None
    return m.group(1) if m else None


def _explain(stale: list[str]) -> str | None:
    recorded = {_recorded_tools_version(name) for name in stale} - {None}
    now = _tools_version()
    if recorded and recorded != {now}:
        return (f"note: the files were made with grpcio-tools {', '.join(sorted(recorded))}, "
                f"this is {now}")
    return None


def main(argv: list[str] | None = None) -> int:
    return generated.main("vp.proto.gen_proto", __doc__, generate, HERE, argv, _explain)


if __name__ == "__main__":
    sys.exit(main())
