"""Views of the register map for ``npuvp regs``: a Markdown summary and JSON rendered from
``REGMAP``, and the C header generated from the RDL (shipped in ``vp/spec/include``).

The full data sheet, with every description, is the generated ``docs/regmap.md``.
"""

from __future__ import annotations

import json
from importlib import resources

from vp.spec.regmap import ENUMS, REGMAP

C_HEADER = "include/npuvp_regs.h"


def _access(field) -> str:
    parts = [field.sw.upper()]
    if field.onwrite:
        parts.append({"woclr": "W1C", "woset": "W1S"}.get(field.onwrite, field.onwrite))
    if field.onread:
        parts.append({"rclr": "RC"}.get(field.onread, field.onread))
    if field.singlepulse:
        parts.append("pulse")
    return "/".join(parts)


def markdown() -> str:
    """One table row per field: address, register, bits, access, reset."""
    lines = [f"# {REGMAP.name} register map (BAR0, {REGMAP.size:#x} bytes)", "",
             "| address | register | field | bits | access | reset |",
             "|---|---|---|---|---|---|"]
    for reg in REGMAP.registers():
        for f in reg.fields:
            bits = f"[{f.lsb + f.width - 1}:{f.lsb}]" if f.width > 1 else f"[{f.lsb}]"
            lines.append(f"| 0x{reg.address:04x} | {reg.full_name} | {f.name} | {bits} | "
                         f"{_access(f)} | 0x{f.reset:x} |")
    return "\n".join(lines) + "\n"


def as_json() -> str:
    """Registers, fields and enumerations as JSON (addresses as integers)."""
    regs = [{"name": r.full_name, "address": r.address, "reset": r.reset, "desc": r.desc,
             "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width, "sw": f.sw,
                         "onread": f.onread, "onwrite": f.onwrite,
                         "singlepulse": f.singlepulse, "reset": f.reset, "enum": f.enum}
                        for f in r.fields]}
            for r in REGMAP.registers()]
    enums = {name: {m.name: int(m) for m in cls} for name, cls in ENUMS.items()}
    return json.dumps({"name": REGMAP.name, "size": REGMAP.size, "registers": regs,
                       "enums": enums}, indent=1) + "\n"


def c_header() -> str:
    """The generated C header."""
    return resources.files("vp.spec").joinpath(C_HEADER).read_text()


def render(fmt: str) -> str:
    """The register map in ``fmt``: ``md``, ``c`` or ``json``."""
    views = {"md": markdown, "c": c_header, "json": as_json}
    if fmt not in views:
        raise ValueError(f"unknown register map format {fmt!r} (expected one of {', '.join(views)})")
    return views[fmt]()
