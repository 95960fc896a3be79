"""SDK fixtures: tiny random checkpoints written into pytest's temporary directories.

Each (arch, seed, overrides) is written once per session; tests that modify files copy it
first (``tiny_copy``).
"""

from __future__ import annotations

import shutil

import pytest

from sdk import ReferenceModel, write_tiny_checkpoint

#: Prompts of different lengths (text goes through each model's tiny tokenizer).
PROMPTS = ("The virtual board models a chip.", "hello", "A mesh network on chip")


@pytest.fixture(scope="session")
def prompts():
    return list(PROMPTS)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """tiny_dir(arch, seed=0, **kw) -> path of a tiny checkpoint (cached per session)."""
    made = {}

    def make(arch: str, seed: int = 0, **kw):
        key = (arch, seed, tuple(sorted(kw.items())))
        if key not in made:
            d = tmp_path_factory.mktemp(f"tiny-{arch}")
            made[key] = write_tiny_checkpoint(d, arch, seed, **kw)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    """tiny_model(arch, **kw) -> ReferenceModel of that tiny checkpoint (cached)."""
    made = {}

    def make(arch: str, **kw):
        key = (arch, tuple(sorted(kw.items())))
        if key not in made:
            made[key] = ReferenceModel.from_pretrained(tiny_dir(arch, **kw))
        return made[key]

    return make


@pytest.fixture
def tiny_copy(tiny_dir, tmp_path):
    """tiny_copy(arch, **kw) -> a private copy of a tiny checkpoint that a test may damage."""
    def make(arch: str, **kw):
        dst = tmp_path / f"copy-{arch}"
        shutil.copytree(tiny_dir(arch, **kw), dst)
        return dst

    return make
