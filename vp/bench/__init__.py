"""Benchmarks: each module's ``run() -> dict`` returns named figures; ``npuvp bench NAME``
(or ``python -m vp.bench.NAME``) prints them with :func:`print_figures`."""

from __future__ import annotations

import json


def format_value(value) -> str:
    """A figure as printed: thousands separators, three decimals for floats."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"


def print_figures(figures: dict, as_json: bool = False) -> None:
    """One aligned ``name  value`` line per figure, or one JSON object."""
    if as_json:
        print(json.dumps(figures))
        return
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {format_value(value)}")
