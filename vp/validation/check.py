"""One validation result (:class:`Check`) and the four ways a check compares.

``error`` is a relative figure whose meaning depends on the comparison (``detail`` says which):

* :func:`exact` / :func:`within`: relative error ``|measured - expected| / |expected|``;
* :func:`at_least` / :func:`at_most`: the relative margin by which the bound holds
  (``(measured - bound) / bound`` resp. ``(bound - measured) / bound``): >= 0 passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Check:
    """A model measurement compared with its formula or bound.

    Attributes:
        check: name of the check (what was measured, on what).
        expected: the formula's value, or the bound (units in ``detail``).
        measured: what the simulated model produced (same units), None if nothing was measured.
        error: relative error (equality checks) or relative margin (bound checks).
        passed: True when the comparison holds.
        detail: units, the comparison and how it was measured.
    """

    check: str
    expected: float | int | None
    measured: float | int | None
    error: float | None
    passed: bool
    detail: str = ""


def _rel(measured, expected) -> float | None:
    if measured is None or expected is None:
        return None
    if expected == 0:
        return 0.0 if measured == 0 else math.inf
    return abs(measured - expected) / abs(expected)


def exact(name: str, expected, measured, detail: str = "") -> Check:
    """Passes when ``measured == expected``; error = relative error."""
    ok = measured is not None and measured == expected
    return Check(name, expected, measured, _rel(measured, expected), ok,
                 f"exact; {detail}" if detail else "exact")


def within(name: str, expected, measured, tol: float, detail: str = "") -> Check:
    """Passes when ``|measured - expected| <= tol * |expected|``; error = relative error."""
    err = _rel(measured, expected)
    ok = err is not None and err <= tol
    head = f"within ±{tol:.3g}"
    return Check(name, expected, measured, err, ok, f"{head}; {detail}" if detail else head)


def at_least(name: str, bound, measured, detail: str = "") -> Check:
    """Passes when ``measured >= bound``; error = relative margin ``(measured - bound) / bound``."""
    if measured is None:
        return Check(name, bound, None, None, False, f"measured >= expected; {detail}")
    margin = (measured - bound) / bound if bound else (0.0 if measured >= 0 else -math.inf)
    return Check(name, bound, measured, margin, measured >= bound,
                 f"measured >= expected; {detail}" if detail else "measured >= expected")


def at_most(name: str, bound, measured, detail: str = "") -> Check:
    """Passes when ``measured <= bound``; error = relative margin ``(bound - measured) / bound``."""
    if measured is None:
        return Check(name, bound, None, None, False, f"measured <= expected; {detail}")
    margin = (bound - measured) / bound if bound else (0.0 if measured <= 0 else -math.inf)
    return Check(name, bound, measured, margin, measured <= bound,
                 f"measured <= expected; {detail}" if detail else "measured <= expected")


def failed(name: str, exc: BaseException) -> Check:
    """A check that could not run (the model raised): a failure, never a crash of the suite."""
    return Check(name, None, None, None, False, f"raised {type(exc).__name__}: {exc}")
