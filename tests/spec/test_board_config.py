"""Board description: the shipped default board, and a clear error for every bad input."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from vp.spec.board_config import (BoardConfig, BoardConfigError, DmaConfig, HbmConfig,
                                  HostLinkConfig, default_board_path, describe_schema,
                                  load_board, parse_board)

GIB = 1 << 30
MINIMAL = {"name": "tiny", "hbm": {"size": "1 GiB"}}


def write(tmp_path, text: str):
    path = tmp_path / "board.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def board_error(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(BoardConfigError) as info:
        load_board(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message       # every message names the file
    return message


def with_(section: str, **keys) -> dict:
    data = {"name": "tiny", "hbm": {"size": "1 GiB"}}
    data.setdefault(section, {}).update(keys)
    return data


def parse_error(data) -> str:
    with pytest.raises(BoardConfigError) as info:
        parse_board(data, "board.yaml")
    message = str(info.value)
    assert message.startswith("board.yaml: "), message
    return message


# --- the default board ------------------------------------------------------------------------

def test_default_board_has_the_documented_values():
    board = load_board(None)
    assert board == BoardConfig(
        name="default",
        host_link=HostLinkConfig(latency_ps=1_000_000, bandwidth=16_000_000_000),
        hbm=HbmConfig(base=0, size=64 * GIB, latency_ps=110_000, bandwidth=819_200_000_000),
        dma=DmaConfig(latency_ps=200_000, bandwidth=100_000_000_000),
    )
    assert board.source == default_board_path()
    assert board.source.endswith("default.yaml")


def test_default_board_spells_out_the_schema_defaults():
    """The shipped file and the table's defaults describe the same board."""
    minimal = parse_board({"name": "default", "hbm": {"size": "64 GiB"}}, "minimal")
    assert minimal == load_board(None)


def test_config_is_frozen_and_plain_ints():
    board = load_board(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        board.hbm.size = 1      # type: ignore[misc]
    for section in (board.host_link, board.hbm, board.dma):
        for f in dataclasses.fields(section):
            assert type(getattr(section, f.name)) is int, f.name


def test_load_by_path_with_units_and_plain_integers(tmp_path):
    path = write(tmp_path, """\
        name: small
        host_link: {latency: 2 us, bandwidth: 8 GiB/s}
        hbm:
          base: 0x1000_0000
          size: 256 MiB
          latency: 100000          # plain integer: picoseconds
          bandwidth: 1000000000    # plain integer: bytes/s
        dma:
          latency: 0.5 us
        """)
    board = load_board(str(path))
    assert board.name == "small"
    assert board.source == str(path)
    assert board.host_link == HostLinkConfig(latency_ps=2_000_000, bandwidth=8 * GIB)
    assert board.hbm == HbmConfig(base=0x1000_0000, size=256 << 20, latency_ps=100_000,
                                  bandwidth=1_000_000_000)
    assert board.dma.latency_ps == 500_000
    assert board.dma.bandwidth == 100_000_000_000          # default


def test_optional_sections_take_defaults():
    board = parse_board(MINIMAL, "mem")
    assert board.host_link == HostLinkConfig()
    assert board.dma == DmaConfig()
    assert board.hbm.base == 0 and board.hbm.latency_ps == 110_000


def test_schema_listing_names_every_key():
    text = describe_schema()
    for path in ("name", "host_link.latency", "host_link.bandwidth", "hbm.base", "hbm.size",
                 "hbm.latency", "hbm.bandwidth", "dma.latency", "dma.bandwidth"):
        assert f"{path}:" in text


# --- bad inputs -------------------------------------------------------------------------------

def test_unknown_key_suggests_the_close_one():
    message = parse_error(with_("dma", latncy="200 ns"))
    assert message == ("board.yaml: dma.latncy: unknown key (did you mean 'latency'? "
                       "allowed: latency, bandwidth, engines)")


def test_unknown_section():
    message = parse_error({**MINIMAL, "fabric": {"mesh": "4x4"}})
    assert "board.yaml: fabric: unknown key" in message
    assert "allowed: name, host_link, hbm, dma" in message


def test_missing_required_keys():
    assert "board.yaml: name: missing required key" in parse_error({"hbm": {"size": "1 GiB"}})
    assert "board.yaml: hbm.size: missing required key" in parse_error({"name": "x"})
    assert "hbm.size: missing required key" in parse_error({"name": "x", "hbm": {}})


@pytest.mark.parametrize("section, key, value, expect", [
    ("hbm", "size", "64 GB/s", "'64 GB/s'"),                 # a bandwidth where a size goes
    ("hbm", "latency", "64 GiB", "'64 GiB'"),
    ("host_link", "bandwidth", "16 GB", "'16 GB'"),
    ("dma", "latency", "fast", "'fast' is not a time"),
    ("hbm", "size", True, "True is not a size"),
    ("hbm", "size", 1.5, "1.5 is not a whole number of bytes"),
    ("hbm", "base", "zero", "'zero' is not an address"),
    ("hbm", "latency", [1, 2], "[1, 2]"),
])
def test_wrong_types_and_bad_units(section, key, value, expect):
    message = parse_error(with_(section, **{key: value}))
    assert f"{section}.{key}: " in message
    assert expect in message


def test_bad_unit_names_the_value_and_an_example():
    message = parse_error(with_("hbm", size="64 GB/s"))
    assert message.startswith("board.yaml: hbm.size: '64 GB/s'")
    assert "'64 GiB'" in message


def test_name_must_be_a_string():
    assert "name: 5 is not a non-empty string" in parse_error({**MINIMAL, "name": 5})


def test_section_must_be_a_mapping():
    message = parse_error({**MINIMAL, "dma": "fast"})
    assert "dma: 'fast' is not a mapping" in message
    assert "latency, bandwidth" in message


@pytest.mark.parametrize("section, key, value, expect", [
    ("hbm", "latency", -5, "-5: a time cannot be negative"),
    ("dma", "latency", "-5 ns", "'-5 ns'"),
    ("hbm", "size", 0, "0 is not allowed (must be at least 4 KiB"),
    ("hbm", "bandwidth", 0, "0: a bandwidth must be positive"),
    ("host_link", "bandwidth", "0 GB/s", "'0 GB/s': a bandwidth must be positive"),
])
def test_negative_and_zero_refused(section, key, value, expect):
    message = parse_error(with_(section, **{key: value}))
    assert f"{section}.{key}: " in message and expect in message


def test_zero_latency_is_allowed():
    assert parse_board(with_("dma", latency=0), "b").dma.latency_ps == 0


def test_hbm_alignment():
    message = parse_error(with_("hbm", base=0x1234))
    assert "hbm.base: 4660 is not a multiple of 4 KiB" in message
    message = parse_error(with_("hbm", size="6000 B"))
    assert "hbm.size: '6000 B' is not a multiple of 4 KiB" in message
    assert parse_board(with_("hbm", base="4 KiB", size="8 KiB"), "b").hbm.base == 4096


def test_hbm_must_fit_the_address_space():
    message = parse_error(with_("hbm", base=(1 << 64) - 4096, size="8 KiB"))
    assert "hbm.size: " in message and "64-bit address space" in message


@pytest.mark.parametrize("document, expect", [
    ("", "the board file is empty"),
    ("- a\n- b\n", "the document is a list, not a mapping"),
    ("just a string\n", "the document is a str, not a mapping"),
])
def test_non_mapping_documents(tmp_path, document, expect):
    assert expect in board_error(tmp_path, document)


def test_yaml_syntax_error_names_the_line(tmp_path):
    message = board_error(tmp_path, "name: x\nhbm: {size: 1 GiB\n")
    assert "invalid YAML" in message and "line " in message


def test_duplicate_keys_are_refused(tmp_path):
    message = board_error(tmp_path, "name: x\nhbm: {size: 1 GiB}\nname: y\n")
    assert "duplicate key 'name'" in message and "line 3" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(BoardConfigError, match="nope.yaml: no such board file"):
        load_board(path)


def test_directory_is_not_a_board(tmp_path):
    with pytest.raises(BoardConfigError, match="cannot read board file"):
        load_board(tmp_path)


def test_error_is_a_value_error():
    assert issubclass(BoardConfigError, ValueError)
