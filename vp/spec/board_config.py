"""The board description: a YAML file that says what a virtual board is made of.

A board file is a mapping of *sections* (``host_link``, ``hbm``, ``dma``, ...) of *keys*.
Values carry their unit in a string (``latency: 500 ns``, ``size: 64 GiB``,
``bandwidth: 16 GB/s``); a plain integer is taken in the base unit (ps, bytes, bytes/s, Hz).
:func:`load_board` turns a file into a :class:`BoardConfig`, a tree of frozen dataclasses whose
values are already in base units (``int`` ps, bytes, bytes/s, Hz).

The schema is the dataclasses themselves: each field is declared with :func:`key` (its YAML
name, :class:`Kind`, default, limits and a description) or :func:`section` (a nested
dataclass). One generic parser walks that table, so adding a section later means declaring one
more dataclass and one :func:`section` field on its parent, never writing validation by hand.
Cross-key rules of a section go in its ``_checks`` method.

Every problem raises :class:`BoardConfigError` with a message naming the file, the dotted key
path, the bad value and what was expected, e.g.::

    board.yaml: hbm.size: '64 GB/s' is not a size (expected e.g. '64 GiB')
    board.yaml: dma.latncy: unknown key (did you mean 'latency'? allowed: latency, bandwidth)

This module is part of the hardware/software contract (``vp.spec``) and imports only the
standard library, PyYAML and ``vp.spec``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterator

import yaml

from vp.spec.units import (KIB, format_size, parse_bandwidth, parse_frequency, parse_size,
                           parse_time)

__all__ = [
    "BoardConfig", "BoardConfigError", "DmaConfig", "HbmConfig", "HostLinkConfig",
    "Kind", "TIME", "SIZE", "ADDRESS", "BANDWIDTH", "FREQUENCY", "INT", "STRING", "BOOL",
    "key", "section", "load_board", "parse_board", "default_board_path", "describe_schema",
    "to_document",
]

#: Granule of HBM placement: the base and size of HBM must be multiples of this (bytes).
PAGE_BYTES = 4 * KIB


class BoardConfigError(ValueError):
    """A board file that cannot be used; the message names the file, key path and value."""


# --------------------------------------------------------------------------------------------
# Value kinds: how a YAML value becomes a base-unit Python value.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """A type of board value: ``parse`` turns YAML data into the base-unit value or raises
    ``ValueError`` with a message that already names the value and gives an example."""

    name: str            # "time", "size", ...: used in messages and the schema listing
    unit: str            # base unit of the parsed value, for the schema listing
    parse: Callable[[Any], Any]


def _parse_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer (expected e.g. 4)")
    return value


def _parse_str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a non-empty string (expected e.g. 'my-board')")
    return value


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not a boolean (expected true or false)")
    return value


def _parse_address(value: Any) -> int:
    try:
        return parse_size(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address (expected a byte address such as "
                         f"0x0 or '4 GiB')") from None


def _parse_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number (expected e.g. 1.5)")
    return float(value)


def choice(*options: str) -> Kind:
    """A kind whose value is one of ``options``."""
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value
    return Kind("choice of " + "|".join(options), "", parse)


def _parse_node(text: Any) -> tuple[int, int]:
    parts = str(text).split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a mesh node (expected 'x,y', e.g. '0,3')")
    return int(parts[0]), int(parts[1])


def _parse_nodes(value: Any) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, str) or not value.split():
        raise ValueError(f"{value!r} is not a list of mesh nodes (expected e.g. '0,0 3,0')")
    return tuple(_parse_node(item) for item in value.split())


TIME = Kind("time", "ps", parse_time)
SIZE = Kind("size", "bytes", parse_size)
ADDRESS = Kind("address", "bytes", _parse_address)
BANDWIDTH = Kind("bandwidth", "bytes/s", parse_bandwidth)
FREQUENCY = Kind("frequency", "Hz", parse_frequency)
INT = Kind("integer", "", _parse_int)
STRING = Kind("string", "", _parse_str)
BOOL = Kind("boolean", "", _parse_bool)
FLOAT = Kind("number", "", _parse_float)
NODE = Kind("mesh node", "", _parse_node)
NODES = Kind("mesh node list", "", _parse_nodes)


# --------------------------------------------------------------------------------------------
# Declaring keys and sections.
# --------------------------------------------------------------------------------------------

class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
_META = "npuvp_board"


@dataclass(frozen=True)
class _KeySpec:
    yaml: str
    kind: Kind
    default: Any          # raw YAML-style default (e.g. '500 ns'), or REQUIRED
    doc: str
    min: int | None
    align: int | None


@dataclass(frozen=True)
class _SectionSpec:
    yaml: str
    cls: type
    doc: str


def key(yaml_key: str, kind: Kind, default: Any = REQUIRED, doc: str = "", *,
        min: int | None = None, align: int | None = None) -> Any:
    """Declare a dataclass field as the board key ``yaml_key``.

    ``default`` is written the way a board file would write it (``'500 ns'``) and is parsed
    once here; ``REQUIRED`` makes the key mandatory. ``min`` is the smallest allowed parsed
    value (``min=1`` means "positive"); ``align`` requires a multiple of that many base units.
    """
    spec = _KeySpec(yaml_key, kind, default, doc, min, align)
    if default is REQUIRED:
        return field(metadata={_META: spec})
    return field(default=kind.parse(default), metadata={_META: spec})


def section(yaml_key: str, cls: type, doc: str = "") -> Any:
    """Declare a dataclass field as the nested section ``yaml_key`` described by ``cls``.

    A section whose keys all have defaults may be omitted from the file.
    """
    spec = _SectionSpec(yaml_key, cls, doc)
    if all(_spec_of(f).default is not REQUIRED for f in _key_fields(cls)
           if isinstance(_spec_of(f), _KeySpec)) and not _required_sections(cls):
        return field(default_factory=cls, metadata={_META: spec})
    return field(metadata={_META: spec})


def _key_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if _META in f.metadata]


def _spec_of(f: dataclasses.Field) -> _KeySpec | _SectionSpec:
    return f.metadata[_META]


def _required_sections(cls: type) -> bool:
    return any(isinstance(_spec_of(f), _SectionSpec) and f.default_factory is dataclasses.MISSING
               for f in _key_fields(cls))


class _Section:
    """Base of every section dataclass: hook for rules that involve several keys."""

    def _checks(self) -> Iterator[tuple[str, str]]:
        """Yield ``(yaml_key, problem)`` for each violated cross-key rule."""
        return iter(())


# --------------------------------------------------------------------------------------------
# The schema. Add new sections here: one dataclass, one ``section`` field on the parent.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class HostLinkConfig(_Section):
    """The link between the host and the board (a PCIe-like BAR plus bulk DMA path)."""

    latency_ps: int = key("latency", TIME, "1 us",
                          "cost of each host register access or memory request (ps)", min=0)
    bandwidth: int = key("bandwidth", BANDWIDTH, "16 GB/s",
                         "rate of bulk host memory transfers (bytes/s)", min=1)
    window: int = key("window", SIZE, "1 GiB", "pinned host memory the DMA engines reach at "
                      "memory_map.HOST_BASE (bytes)", min=PAGE_BYTES, align=PAGE_BYTES)


@dataclass(frozen=True, kw_only=True)
class HbmConfig(_Section):
    """Device memory as the host and the DMA engines see it."""

    base: int = key("base", ADDRESS, 0, "byte address of the first HBM byte",
                    min=0, align=PAGE_BYTES)
    size: int = key("size", SIZE, REQUIRED, "HBM capacity (bytes)", min=PAGE_BYTES,
                    align=PAGE_BYTES)
    # Geometry (defaults: HBM3, JESD238): stacks -> channels -> pseudo-channels -> banks.
    stacks: int = key("stacks", INT, 4, "HBM stacks", min=1)
    channels_per_stack: int = key("channels_per_stack", INT, 16, "independent channels per stack",
                                  min=1)
    pseudo_channels: int = key("pseudo_channels", INT, 2, "pseudo-channels per channel", min=1)
    banks: int = key("banks", INT, 16, "banks per pseudo-channel", min=1)
    row_bytes: int = key("row_bytes", SIZE, "1 KiB", "row (page) size of a bank (bytes)", min=64)
    interleave_bytes: int = key("interleave_bytes", SIZE, "256 B",
                                "granule spread round-robin over the pseudo-channels (bytes)",
                                min=32)
    burst_bytes: int = key("burst_bytes", SIZE, "64 B", "bytes of one burst (bytes)", min=32)
    # Timing.
    clock: int = key("clock", FREQUENCY, "1.6 GHz", "command clock; tCK = 1 / clock (Hz)", min=1)
    tRCD: int = key("tRCD", TIME, "14 ns", "activate to read/write (ps)", min=0)
    tCL: int = key("tCL", TIME, "14 ns", "read command to first data (ps)", min=0)
    tRP: int = key("tRP", TIME, "14 ns", "precharge to activate (ps)", min=0)
    tRAS: int = key("tRAS", TIME, "33 ns", "activate to precharge, minimum (ps)", min=0)
    tRRD: int = key("tRRD", TIME, "2 ns", "activate to activate, different banks (ps)", min=0)
    tFAW: int = key("tFAW", TIME, "16 ns", "window holding at most four activates (ps)", min=0)
    tREFI: int = key("tREFI", TIME, "3.9 us", "refresh interval (ps)", min=1)
    tRFC: int = key("tRFC", TIME, "350 ns", "refresh cycle time: channel unavailable (ps)", min=0)
    channel_bandwidth: int = key("channel_bandwidth", BANDWIDTH, "25.6 GB/s",
                                 "data rate of one pseudo-channel (bytes/s)", min=1)

    def _checks(self) -> Iterator[tuple[str, str]]:
        if self.base + self.size > 1 << 64:
            yield "size", (f"base {self.base:#x} + size {self.size:#x} ends beyond the 64-bit "
                           f"address space")
        if self.tRFC >= self.tREFI:
            yield "tRFC", "must be shorter than tREFI (the memory would never be available)"
        for name in ("row_bytes", "interleave_bytes", "burst_bytes"):
            value = getattr(self, name)
            if value & (value - 1):
                yield name, f"{value} is not a power of two"

    @property
    def peak_bandwidth(self) -> int:
        """All pseudo-channels at once (bytes/s)."""
        return self.stacks * self.channels_per_stack * self.pseudo_channels * self.channel_bandwidth


@dataclass(frozen=True, kw_only=True)
class DmaConfig(_Section):
    """A DMA engine (descriptor-driven copy between host, HBM and SRAM)."""

    latency_ps: int = key("latency", TIME, "200 ns",
                          "setup cost of each transfer (descriptor fetch, engine start) (ps)",
                          min=0)
    bandwidth: int = key("bandwidth", BANDWIDTH, "100 GB/s",
                         "streaming rate of one engine (bytes/s)", min=1)
    engines: int = key("engines", INT, 4, "descriptor engines serving the command processor's "
                       "DMA packets", min=1)


MODES = ("functional", "performance")
CORE_KINDS = ("ca", "cf", "unified")


@dataclass(frozen=True, kw_only=True)
class ChipConfig(_Section):
    """Chip-wide settings."""

    clock: int = key("clock", FREQUENCY, "1.5 GHz", "core and network-on-chip clock (Hz)", min=1)


@dataclass(frozen=True, kw_only=True)
class CoreKindConfig(_Section):
    """One kind of core: how many, and what each has."""

    count: int = key("count", INT, 0, "cores of this kind (0 = none)", min=0)
    matrix_rows: int = key("matrix_rows", INT, 32, "systolic array rows R (MACs per column)",
                           min=1)
    matrix_cols: int = key("matrix_cols", INT, 32, "systolic array columns C", min=1)
    vector_lanes: int = key("vector_lanes", INT, 64, "fp32 vector elements per cycle", min=1)
    sram: int = key("sram", SIZE, "16 MiB", "local SRAM (bytes)", min=KIB, align=KIB)
    sram_bytes_per_cycle: int = key("sram_bytes_per_cycle", INT, 512,
                                    "SRAM bandwidth seen by the compute units (bytes/cycle)",
                                    min=1)
    gemm_mode: str = key("gemm_mode", choice("ws", "pipelined"), "ws",
                         "systolic array schedule: ws (folds in series) or pipelined")

    def _checks(self) -> Iterator[tuple[str, str]]:
        if self.sram > 1 << 32:
            yield "sram", "a core's SRAM may be at most 4 GiB (its aperture in the memory map)"


@dataclass(frozen=True, kw_only=True)
class CoresConfig(_Section):
    """The programmable cores, by kind. Core ids: ca first, then cf, then unified."""

    ca: CoreKindConfig = section("ca", CoreKindConfig, "context-aware (attention) cores")
    cf: CoreKindConfig = section("cf", CoreKindConfig, "context-free (FFN/projection) cores")
    unified: CoreKindConfig = section("unified", CoreKindConfig, "unified cores (both)")

    @property
    def total(self) -> int:
        return self.ca.count + self.cf.count + self.unified.count

    def kinds(self) -> list[str]:
        """Kind of each core, indexed by core id."""
        return [k for k in CORE_KINDS for _ in range(getattr(self, k).count)]

    def _checks(self) -> Iterator[tuple[str, str]]:
        if self.total > 64:
            yield "ca", f"{self.total} cores: a board holds at most 64 (64-bit core masks)"


@dataclass(frozen=True, kw_only=True)
class NocConfig(_Section):
    """The 2-D mesh network-on-chip (XY routing)."""

    mesh_x: int = key("mesh_x", INT, 4, "mesh columns", min=1)
    mesh_y: int = key("mesh_y", INT, 4, "mesh rows", min=1)
    router_cycles: int = key("router_cycles", INT, 2, "router pipeline latency (cycles)", min=0)
    link_cycles: int = key("link_cycles", INT, 1, "link traversal latency (cycles)", min=0)
    flit_bytes: int = key("flit_bytes", INT, 64, "link width: bytes per cycle per direction",
                          min=1)
    hbm_nodes: tuple = key("hbm_nodes", NODES, "0,0", "node of each HBM stack's controller")
    cp_node: tuple = key("cp_node", NODE, "0,0", "node of the command processor and DMA engines")
    placement: str = key("placement", STRING, "auto",
                         "node of each core by core id, e.g. '0,0 1,0 ...', or 'auto' "
                         "(row-major, kinds interleaved)")

    def core_nodes(self, kinds: list[str]) -> list[tuple[int, int]]:
        """Mesh node of each core (``kinds[i]`` is core i's kind). 'auto' interleaves the kinds
        (ca, cf, unified, ca, cf, ...) over the nodes in row-major order, so each CA core sits
        next to a CF core."""
        if self.placement != "auto":
            return list(_parse_nodes(self.placement))
        by_kind = {k: [i for i, kind in enumerate(kinds) if kind == k] for k in CORE_KINDS}
        order = []
        while any(by_kind.values()):
            for k in CORE_KINDS:
                if by_kind[k]:
                    order.append(by_kind[k].pop(0))
        nodes = [(n % self.mesh_x, n // self.mesh_x) for n in range(len(order))]
        placed = dict(zip(order, nodes))
        return [placed[i] for i in range(len(kinds))]

    def _checks(self) -> Iterator[tuple[str, str]]:
        for name, nodes in (("hbm_nodes", self.hbm_nodes), ("cp_node", (self.cp_node,))):
            for x, y in nodes:
                if x >= self.mesh_x or y >= self.mesh_y:
                    yield name, f"node {x},{y} is outside the {self.mesh_x}x{self.mesh_y} mesh"
        if self.placement != "auto":
            try:
                nodes = _parse_nodes(self.placement)
            except ValueError as exc:
                yield "placement", str(exc)
                return
            for x, y in nodes:
                if x >= self.mesh_x or y >= self.mesh_y:
                    yield "placement", f"node {x},{y} is outside the {self.mesh_x}x{self.mesh_y} mesh"


@dataclass(frozen=True, kw_only=True)
class CpConfig(_Section):
    """The command processor."""

    packet_cycles: int = key("packet_cycles", INT, 20,
                             "decode and dispatch time of one packet (cycles)", min=0)
    watchdog: int = key("watchdog", TIME, "1 ms", "a wait with no progress anywhere for this "
                        "long is a deadlock (ps)", min=1)


@dataclass(frozen=True, kw_only=True)
class EnergyConfig(_Section):
    """Energy per action (pJ) and static power (W), Accelergy-style."""

    mac_fp32_pj: float = key("mac_fp32_pj", FLOAT, 4.6, "one fp32 multiply-accumulate (pJ)")
    mac_bf16_pj: float = key("mac_bf16_pj", FLOAT, 1.1, "one bf16 multiply-accumulate (pJ)")
    mac_int8_pj: float = key("mac_int8_pj", FLOAT, 0.3, "one int8 multiply-accumulate (pJ)")
    vector_op_pj: float = key("vector_op_pj", FLOAT, 0.8, "one vector element operation (pJ)")
    sram_pj_per_byte: float = key("sram_pj_per_byte", FLOAT, 0.6, "SRAM read or write (pJ/B)")
    hbm_pj_per_byte: float = key("hbm_pj_per_byte", FLOAT, 31.0, "HBM read or write (pJ/B)")
    noc_pj_per_byte_hop: float = key("noc_pj_per_byte_hop", FLOAT, 0.9,
                                     "one byte over one NoC hop (pJ)")
    static_ca_w: float = key("static_ca_w", FLOAT, 2.0, "static power of one CA core (W)")
    static_cf_w: float = key("static_cf_w", FLOAT, 3.0, "static power of one CF core (W)")
    static_unified_w: float = key("static_unified_w", FLOAT, 3.5,
                                  "static power of one unified core (W)")
    static_hbm_w: float = key("static_hbm_w", FLOAT, 10.0, "static power of all HBM (W)")


@dataclass(frozen=True, kw_only=True)
class BoardConfig(_Section):
    """A whole board, values in base units. ``source`` is the file it was read from."""

    name: str = key("name", STRING, REQUIRED, "board name, reported to the host")
    host_link: HostLinkConfig = section("host_link", HostLinkConfig, "host <-> board link")
    hbm: HbmConfig = section("hbm", HbmConfig, "device memory")
    dma: DmaConfig = section("dma", DmaConfig, "DMA engines")
    mode: str = key("mode", choice(*MODES), "functional",
                    "functional (real bytes, bit-exact) or performance (timing only)")
    chip: ChipConfig = section("chip", ChipConfig, "chip-wide settings")
    cores: CoresConfig = section("cores", CoresConfig, "programmable cores")
    noc: NocConfig = section("noc", NocConfig, "network-on-chip")
    cp: CpConfig = section("cp", CpConfig, "command processor")
    energy: EnergyConfig = section("energy", EnergyConfig, "energy per action")
    source: str = field(default="", compare=False)

    def _checks(self) -> Iterator[tuple[str, str]]:
        nodes = self.noc.mesh_x * self.noc.mesh_y
        if self.noc.placement == "auto" and self.cores.total > nodes:
            yield "cores", (f"{self.cores.total} cores do not fit the {self.noc.mesh_x}x"
                            f"{self.noc.mesh_y} mesh with automatic placement")
        if self.noc.placement != "auto":
            placed = len(self.noc.placement.split())
            if placed != self.cores.total:
                yield "noc", (f"placement lists {placed} nodes for {self.cores.total} cores")


# --------------------------------------------------------------------------------------------
# Loading and the generic parser.
# --------------------------------------------------------------------------------------------

#: Boards shipped with the package, by name (``vp/boards/<name>.yaml``); the first is the default.
SHIPPED_BOARDS = ("afd", "unified")


def shipped_board_path(name: str) -> str:
    """Path of the shipped board ``name`` (one of :data:`SHIPPED_BOARDS`)."""
    return str(resources.files("vp.boards").joinpath(f"{name}.yaml"))


def default_board_path() -> str:
    """Path of the default board: the disaggregated board ``vp/boards/afd.yaml``."""
    return shipped_board_path(SHIPPED_BOARDS[0])


def load_board(path: str | os.PathLike | None = None) -> BoardConfig:
    """Read and validate a board file; ``None`` loads the default board, and a shipped board's
    name (``"afd"``, ``"unified"``) loads that board.

    Raises :class:`BoardConfigError` for a missing or unreadable file, YAML syntax errors and
    every schema violation.
    """
    if path is None or path in SHIPPED_BOARDS:
        source = shipped_board_path(path or SHIPPED_BOARDS[0])
        text = resources.files("vp.boards").joinpath(os.path.basename(source)).read_text(
            encoding="utf-8")
    else:
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise BoardConfigError(f"{source}: no such board file") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BoardConfigError(f"{source}: cannot read board file: {reason}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise BoardConfigError(f"{source}: {_describe_yaml_error(exc)}") from None
    return parse_board(data, source)


def parse_board(data: Any, source: str) -> BoardConfig:
    """Validate an already-loaded YAML document; ``source`` names it in error messages."""
    if data is None:
        raise BoardConfigError(f"{source}: the board file is empty (expected a mapping with "
                               f"keys: {_allowed(BoardConfig)})")
    if not isinstance(data, dict):
        raise BoardConfigError(f"{source}: the document is a {type(data).__name__}, not a "
                               f"mapping (expected keys: {_allowed(BoardConfig)})")
    board = _parse_section(BoardConfig, data, "", source)
    return dataclasses.replace(board, source=source)


def to_document(board: Any) -> dict:
    """The board (or one section) as a board-file document: plain YAML/JSON values in base
    units (ints for times in ps, sizes in bytes, rates in bytes/s, clocks in Hz), so that
    ``parse_board(to_document(b), src) == b``. The board sends this to the host at open
    (``DeviceInfo.extra["board"]``), like a device tree: the SDK plans for the board it has."""
    doc = {}
    for f in _key_fields(type(board)):
        spec, value = _spec_of(f), getattr(board, f.name)
        if isinstance(spec, _SectionSpec):
            doc[spec.yaml] = to_document(value)
        elif spec.kind is NODE:
            doc[spec.yaml] = f"{value[0]},{value[1]}"
        elif spec.kind is NODES:
            doc[spec.yaml] = " ".join(f"{x},{y}" for x, y in value)
        else:
            doc[spec.yaml] = value
    return doc


def _parse_section(cls: type, data: Any, path: str, source: str) -> Any:
    def fail(at: str, problem: str) -> BoardConfigError:
        return BoardConfigError(f"{source}: {at}: {problem}" if at else f"{source}: {problem}")

    if data is None:            # "hbm:" with nothing under it, or an omitted section
        data = {}
    if not isinstance(data, dict):
        raise fail(path, f"{data!r} is not a mapping (expected a section with keys: "
                         f"{_allowed(cls)})")
    fields = {_spec_of(f).yaml: f for f in _key_fields(cls)}
    for name in data:
        if name not in fields:
            raise fail(_join(path, str(name)), f"unknown key ({_suggest(name, list(fields))}"
                                               f"allowed: {_allowed(cls)})")
    values: dict[str, Any] = {}
    for yaml_key, f in fields.items():
        spec, at = _spec_of(f), _join(path, yaml_key)
        if isinstance(spec, _SectionSpec):
            values[f.name] = _parse_section(spec.cls, data.get(yaml_key), at, source)
        elif yaml_key in data:
            values[f.name] = _parse_value(spec, data[yaml_key], at, fail)
        elif spec.default is REQUIRED:
            raise fail(at, f"missing required key (a {spec.kind.name}: {spec.doc})")
    obj = cls(**values)
    for yaml_key, problem in obj._checks():
        raise fail(_join(path, yaml_key), problem)
    return obj


def _parse_value(spec: _KeySpec, raw: Any, at: str, fail) -> Any:
    try:
        value = spec.kind.parse(raw)
    except (ValueError, TypeError) as exc:
        raise fail(at, str(exc)) from None
    if spec.min is not None and value < spec.min:
        need = "positive" if spec.min == 1 else f"at least {_show(spec, spec.min)}"
        raise fail(at, f"{raw!r} is not allowed (must be {need})")
    if spec.align and value % spec.align:
        raise fail(at, f"{raw!r} is not a multiple of {_show(spec, spec.align)}")
    return value


def _show(spec: _KeySpec, value: int) -> str:
    if spec.kind in (SIZE, ADDRESS):
        return f"{format_size(value)} ({value} bytes)" if value >= KIB else f"{value} bytes"
    return f"{value} {spec.kind.unit}".strip()


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _allowed(cls: type) -> str:
    return ", ".join(_spec_of(f).yaml for f in _key_fields(cls))


def _suggest(name: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def describe_schema(cls: type = BoardConfig, path: str = "") -> str:
    """One line per key: dotted path, kind, default (or 'required') and description."""
    lines = []
    for f in _key_fields(cls):
        spec = _spec_of(f)
        at = _join(path, spec.yaml)
        if isinstance(spec, _SectionSpec):
            lines.append(f"{at}:  section: {spec.doc}")
            lines.append(describe_schema(spec.cls, at))
        else:
            default = "required" if spec.default is REQUIRED else f"default {spec.default!r}"
            lines.append(f"{at}:  {spec.kind.name}, {default}: {spec.doc}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# YAML: safe loading that refuses duplicate keys (PyYAML silently keeps the last one).
# --------------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        name = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = name in seen
            seen.add(name)
        except TypeError:       # unhashable key; the base constructor reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {name!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"invalid YAML: {where}{problem}"
