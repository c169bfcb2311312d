"""Grading of one unit result as GB/T 24356 does: any class A error -> fail (不合格); otherwise each quality
element scores 100 minus its deductions, the unit score is the weighted mean, and a grade comes from the bands.
All numbers come from ``standards/config/grading.yaml``.
"""
from __future__ import annotations


def grade(checks: list[dict], cfg: dict) -> tuple[dict, list[dict]]:
    """``checks``: per check {id, element, applicable, checked, counts: {severity: n}}.
    Returns (verdict, elements)."""
    ded, per = cfg["deduction"], cfg["per_items"]
    elements = []
    for name, weight in cfg["elements"].items():
        mine = [c for c in checks if c["element"] == name and c["applicable"]]
        if not mine:
            elements.append({"id": name, "weight": weight, "score": None, "deduction": 0.0, "evaluated": False})
            continue
        total = 0.0
        for c in mine:
            scale = per / max(c["checked"], per)
            total += sum(ded[s] * n for s, n in c["counts"].items()) * scale
        elements.append({"id": name, "weight": weight, "score": round(max(0.0, 100.0 - total), 1),
                         "deduction": round(total, 2), "evaluated": True})
    scored = [e for e in elements if e["evaluated"]]
    wsum = sum(e["weight"] for e in scored)
    score = round(sum(e["score"] * e["weight"] for e in scored) / wsum, 1) if wsum else None
    reasons = []
    n_a = sum(c["counts"].get("A", 0) for c in checks if c["applicable"])
    if n_a:
        reasons.append({"rule": "class_a", "count": n_a})
    low = [e["id"] for e in scored if e["score"] < cfg["element_fail_below"]]
    if low:
        reasons.append({"rule": "element_below", "elements": low, "limit": cfg["element_fail_below"]})
    band = None
    if score is not None:
        band = next((g["grade"] for g in cfg["grades"] if score >= g["min"]), None)
    if band is None:
        reasons.append({"rule": "score_below", "score": score})
    passed = not reasons
    verdict = {"result": "pass" if passed else "fail", "grade": band if passed else "fail", "score": score,
               "reasons": reasons}
    return verdict, elements
