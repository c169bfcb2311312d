"""The check registry, after Lanelet2's validators: each check is one registered function with an id, the
quality element it belongs to (GB/T 18316), an error class (A/B/C/D, or ``info``) and a description.

A check takes a :class:`standards.context.Context` and returns :class:`Hits` (columnar: one row per issue,
as Lanelet2 counts issues), or ``None`` when it does not apply (e.g. no check-point file was given).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

SEVERITIES = ("A", "B", "C", "D", "info")
ELEMENTS = ("spatial_reference", "positional_accuracy", "attribute_accuracy", "completeness",
            "logical_consistency", "metadata", "compliance")


@dataclass(frozen=True)
class Check:
    id: str
    element: str
    severity: str
    description: str
    needs: tuple[str, ...]
    func: Callable


@dataclass
class Hits:
    """Issues found by one check. ``kind``: element kind per row (or one for all); ``ids``: element ids;
    ``x``/``y``: a local position (metres) per row, NaN when the issue has no place; ``detail``: short text
    per row (never a coordinate); ``checked``: how many items were examined (for error rates);
    ``severity``: optional per-row class overriding the check's."""

    kind: np.ndarray | str
    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    detail: list[str] | None = None
    checked: int = 0
    severity: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        n = len(self.ids)
        self.x = np.broadcast_to(np.asarray(self.x, float), (n,)).copy() if n else np.zeros(0)
        self.y = np.broadcast_to(np.asarray(self.y, float), (n,)).copy() if n else np.zeros(0)
        if isinstance(self.kind, str):
            self.kind = np.full(n, self.kind, dtype=object)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def none(cls, checked: int = 0, **extra) -> "Hits":
        return cls("map", np.zeros(0, np.int64), np.zeros(0), np.zeros(0), [], checked, extra=extra)


CHECKS: dict[str, Check] = {}


def check(id: str, *, element: str, severity: str, description: str, needs: tuple[str, ...] = ()):
    """Register a check function (the only step needed to add one)."""
    if severity not in SEVERITIES:
        raise ValueError(f"check {id}: severity {severity!r} not in {SEVERITIES}")
    if element not in ELEMENTS:
        raise ValueError(f"check {id}: element {element!r} not in {ELEMENTS}")

    def deco(func):
        if id in CHECKS:
            raise ValueError(f"check {id} registered twice")
        CHECKS[id] = Check(id, element, severity, description, tuple(needs), func)
        return func

    return deco


def all_checks() -> dict[str, Check]:
    import standards.checks  # noqa: F401  (registers the built-in checks)

    return CHECKS
