"""Generated files: one way to find, write and check them.

The register map (``vp.spec.gen_regmap``), the instruction data sheet (``vp.spec.gen_isa``) and
the protobuf stubs (``vp.proto.gen_proto``) each produce ``{relative path: text}``; this module
compares that with the files on disk, writes what changed, and gives their command lines the
same ``--check`` behaviour (exit 1, naming each stale file and the command that regenerates it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def stale_files(files: dict[str, str], root: Path) -> list[str]:
    """Relative paths whose file under ``root`` is missing or differs from ``files``."""
    return [rel for rel, text in files.items()
            if not (root / rel).exists() or (root / rel).read_text(encoding="utf-8") != text]


def write_files(files: dict[str, str], root: Path) -> list[str]:
    """Write the files that changed; returns their relative paths."""
    changed = stale_files(files, root)
    for rel in changed:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel], encoding="utf-8")
    return changed


def main(prog: str, description: str | None, generate: Callable[[], dict[str, str]],
         root: Path, argv: list[str] | None = None,
         explain: Callable[[list[str]], str | None] | None = None) -> int:
    """Command line of a generator: write (default) or ``--check``. ``explain(stale)`` may add
    a note to a failed check (e.g. the tool versions that made the files)."""
    ap = argparse.ArgumentParser(prog=f"python -m {prog}", description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if any generated file is stale")
    args = ap.parse_args(argv)
    files = generate()
    if not args.check:
        changed = write_files(files, root)
        for rel in files:
            print(f"{'wrote' if rel in changed else 'unchanged'}: {rel}")
        return 0
    stale = stale_files(files, root)
    for rel in stale:
        print(f"stale: {rel} (run: python -m {prog})", file=sys.stderr)
    note = explain(stale) if (stale and explain) else None
    if note:
        print(note, file=sys.stderr)
    if not stale:
        print(f"up to date: {', '.join(files)}")
    return 1 if stale else 0
