"""Board description: the shipped default board, and a clear error for every bad input."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from vp.spec.board_config import (BoardConfigError, DmaConfig, HbmConfig,
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


# --- the shipped boards ------------------------------------------------------------------------

def test_default_board_is_the_disaggregated_board():
    board = load_board(None)
    assert board == load_board("afd")
    assert board.source == default_board_path() and board.source.endswith("afd.yaml")
    assert board.name == "afd-8ca-8cf" and board.mode == "functional"
    assert (board.cores.ca.count, board.cores.cf.count, board.cores.unified.count) == (8, 8, 0)
    assert (board.noc.mesh_x, board.noc.mesh_y) == (4, 4)
    assert board.hbm.size == 144 * GIB and board.hbm.stacks == 4
    assert board.hbm.peak_bandwidth == 128 * 38_400_000_000
    assert board.host_link == HostLinkConfig(latency_ps=1_000_000, bandwidth=16_000_000_000)


def test_unified_board_matches_the_afd_board_but_for_its_cores():
    afd, unified = load_board("afd"), load_board("unified")
    assert unified.cores.total == afd.cores.total == 16
    assert set(unified.cores.kinds()) == {"unified"}
    assert sum(getattr(unified.cores, k).count * getattr(unified.cores, k).sram
               for k in ("ca", "cf", "unified")) == \
        sum(getattr(afd.cores, k).count * getattr(afd.cores, k).sram for k in ("ca", "cf"))
    for section in ("hbm", "noc", "host_link", "dma", "cp", "energy", "chip"):
        assert getattr(unified, section) == getattr(afd, section), section


def test_auto_placement_puts_every_ca_core_next_to_a_cf_core():
    board = load_board("afd")
    kinds = board.cores.kinds()
    nodes = board.noc.core_nodes(kinds)
    assert len(set(nodes)) == len(nodes) == 16
    for i, kind in enumerate(kinds):
        if kind == "ca":
            x, y = nodes[i]
            assert any(kinds[j] == "cf" and abs(x - u) + abs(y - v) == 1
                       for j, (u, v) in enumerate(nodes))


def test_minimal_board_takes_the_schema_defaults():
    minimal = parse_board(MINIMAL, "minimal")
    assert minimal.host_link == HostLinkConfig() and minimal.dma == DmaConfig()
    assert minimal.hbm == HbmConfig(size=1 * GIB) and minimal.cores.total == 0


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
          tRCD: 15000              # plain integer: picoseconds
          channel_bandwidth: 1000000000    # plain integer: bytes/s
        dma:
          latency: 0.5 us
        """)
    board = load_board(str(path))
    assert board.name == "small"
    assert board.source == str(path)
    assert board.host_link == HostLinkConfig(latency_ps=2_000_000, bandwidth=8 * GIB)
    assert board.hbm == HbmConfig(base=0x1000_0000, size=256 << 20, tRCD=15_000,
                                  channel_bandwidth=1_000_000_000)
    assert board.dma.latency_ps == 500_000
    assert board.dma.bandwidth == 100_000_000_000          # default


def test_optional_sections_take_defaults():
    board = parse_board(MINIMAL, "mem")
    assert board.host_link == HostLinkConfig()
    assert board.dma == DmaConfig()
    assert board.hbm.base == 0 and board.hbm.tRCD == 14_000


def test_schema_listing_names_every_key():
    text = describe_schema()
    for path in ("name", "host_link.latency", "host_link.bandwidth", "hbm.base", "hbm.size",
                 "hbm.tRCD", "hbm.channel_bandwidth", "dma.latency", "dma.bandwidth",
                 "mode", "chip.clock", "cores.ca.count", "cores.cf.matrix_rows", "noc.mesh_x",
                 "noc.hbm_nodes", "cp.watchdog", "energy.mac_bf16_pj"):
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
    ("hbm", "tRP", "64 GiB", "'64 GiB'"),
    ("host_link", "bandwidth", "16 GB", "'16 GB'"),
    ("dma", "latency", "fast", "'fast' is not a time"),
    ("hbm", "size", True, "True is not a size"),
    ("hbm", "size", 1.5, "1.5 is not a whole number of bytes"),
    ("hbm", "base", "zero", "'zero' is not an address"),
    ("hbm", "tRP", [1, 2], "[1, 2]"),
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
    ("hbm", "tCL", -5, "-5: a time cannot be negative"),
    ("dma", "latency", "-5 ns", "'-5 ns'"),
    ("hbm", "size", 0, "0 is not allowed (must be at least 4 KiB"),
    ("hbm", "channel_bandwidth", 0, "0: a bandwidth must be positive"),
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


@pytest.mark.parametrize("section, keys, expect", [
    ("cores", {"ca": {"count": 40}, "cf": {"count": 40}}, "at most 64"),
    ("cores", {"cf": {"gemm_mode": "fast"}}, "cores.cf.gemm_mode: 'fast' is not one of ws, pipelined"),
    ("noc", {"hbm_nodes": "0,0 9,9"}, "noc.hbm_nodes: node 9,9 is outside the 4x4 mesh"),
    ("noc", {"cp_node": "a,b"}, "noc.cp_node: 'a,b' is not a mesh node"),
    ("hbm", {"row_bytes": "1000 B"}, "hbm.row_bytes: 1000 is not a power of two"),
    ("hbm", {"tRFC": "5 us"}, "hbm.tRFC: must be shorter than tREFI"),
    ("energy", {"mac_fp32_pj": "lots"}, "energy.mac_fp32_pj: 'lots' is not a number"),
])
def test_chip_sections_refuse_bad_values(section, keys, expect):
    data = {"name": "x", "hbm": {"size": "1 GiB"}}
    data.setdefault(section, {}).update(keys)
    assert expect in parse_error(data)


def test_too_many_cores_for_the_mesh():
    data = {"name": "x", "hbm": {"size": "1 GiB"}, "noc": {"mesh_x": 2, "mesh_y": 2},
            "cores": {"ca": {"count": 3}, "cf": {"count": 3}}}
    assert "cores: 6 cores do not fit the 2x2 mesh" in parse_error(data)
    data["noc"]["placement"] = "0,0 1,0"
    assert "noc: placement lists 2 nodes for 6 cores" in parse_error(data)


def test_unknown_mode():
    assert "mode: 'turbo' is not one of functional, performance" in \
        parse_error({**MINIMAL, "mode": "turbo"})
