"""The registries of rule operations, after the @check registry in standards/registry.py: a rule's ``check.op``
and ``action.op`` name one registered function each, so a new kind of check or action is one decorated
function here (its parameters are declared with it, and ``load_rules`` validates YAML against them).

A *tag* check selects rows of a tag table (key and value arrays, one row per tag of every element); a
*geometry* check returns the elements it hits. An action changes the state of one desensitisation run
(:class:`desensitize.engine.Run`): what is deleted, which tags go or come, what is flagged or blocks
publication, and the audit entries that say so.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Op:
    name: str
    func: Callable
    required: frozenset = frozenset()
    optional: frozenset = frozenset()
    geometry: bool = False  # check ops: works on geometry, not on the tag table
    removing: bool = False  # action ops: its result must be absent from published tiles (the final scan)


@dataclass
class Match:
    """What a rule's check found: element indices g, and for tag checks the (g, key) of each matching tag;
    for geometry checks the elements hit per restricted-area label."""

    g: np.ndarray
    keys: tuple[np.ndarray, np.ndarray] | None = None
    by_label: dict = field(default_factory=dict)


CHECK_OPS: dict[str, Op] = {}
ACTION_OPS: dict[str, Op] = {}


def check_op(name: str, required=(), optional=(), geometry: bool = False):
    def register(func):
        CHECK_OPS[name] = Op(name, func, frozenset(required), frozenset(optional), geometry=geometry)
        return func
    return register


def action_op(name: str, required=(), optional=(), removing: bool = False):
    def register(func):
        ACTION_OPS[name] = Op(name, func, frozenset(required), frozenset(optional), removing=removing)
        return func
    return register


# -- checks -----------------------------------------------------------------------------------------------
def value_match(values: np.ndarray, spec) -> np.ndarray:
    if spec == "*":
        return np.ones(len(values), bool)
    return np.isin(values, np.array(spec, dtype=object))


def _regex_mask(strings: np.ndarray, patterns) -> np.ndarray:
    """Regex search over the distinct strings only, mapped back (tags repeat a lot)."""
    if not len(strings):
        return np.zeros(0, bool)
    uniq, inv = np.unique(strings.astype(str), return_inverse=True)
    hit = np.fromiter((any(p.search(u) for p in patterns) for u in uniq), bool, len(uniq))
    return hit[inv]


@check_op("tag_present", required={"keys"}, optional={"when"})
def tag_present(rule, tk, tv) -> np.ndarray:
    return np.isin(tk, np.array(rule.check["keys"], dtype=object))


@check_op("tag_match", required={"tags"}, optional={"when"})
def tag_match(rule, tk, tv) -> np.ndarray:
    sel = np.zeros(len(tk), bool)
    for k, spec in rule.check["tags"].items():
        key = tk == k
        if key.any():
            sel[key] |= value_match(tv[key], spec)
    return sel


@check_op("text_match", required={"patterns"}, optional={"keys", "when"})
def text_match(rule, tk, tv) -> np.ndarray:
    keys = rule.check.get("keys")
    cand = np.isin(tk, np.array(keys, dtype=object)) if keys else np.ones(len(tk), bool)
    sel = np.zeros(len(tk), bool)
    if cand.any():
        sel[cand] = _regex_mask(tv[cand], rule.patterns) | (
            _regex_mask(tk[cand], rule.patterns) if not keys else False)
    return sel


@check_op("intersects", required={"layer"}, geometry=True)
def intersects(rule, run) -> Match | None:
    """Elements (true geometry) intersecting a restricted-area polygon, grouped by the polygon's label."""
    import shapely

    restricted = run.restricted
    if restricted is None or not len(restricted.polygons):
        return None
    cand = np.flatnonzero(run.class_mask(rule)[run.t.cls])
    gi, pi = shapely.STRtree(restricted.polygons).query(run.geometries()[cand], predicate="intersects")
    hit_g = cand[gi]
    by_label = defaultdict(list)
    for g, p in zip(hit_g.tolist(), pi.tolist()):
        by_label[restricted.labels[p]].append(g)
    return Match(np.unique(hit_g), None, dict(by_label))


# -- actions ----------------------------------------------------------------------------------------------
def describe_check(rule) -> str:
    c = rule.check
    if c["op"] == "tag_present":
        return "tag " + "/".join(c["keys"])
    if c["op"] == "tag_match":
        return "tags " + ", ".join(f"{k}={'*' if v == '*' else '|'.join(v)}" for k, v in c["tags"].items())
    return c["op"]


@action_op("delete_feature", removing=True)
def delete_feature(run, rule, match: Match) -> None:
    run.dead[match.g] = True
    if match.keys is None:  # geometry check: one audit entry per restricted area
        for label, gs in match.by_label.items():
            run.audit.record(rule.id, "delete_feature", run.t, np.unique(gs), f"intersects restricted area {label}")
    else:
        run.audit.record(rule.id, "delete_feature", run.t, match.g, "matched " + describe_check(rule))


def _target_tags(run, rule, match: Match) -> tuple[np.ndarray, np.ndarray]:
    """(g, key) of the tags an action works on: ``action.keys`` of the hit elements, else the matched tags."""
    keys = rule.action.get("keys")
    if not keys:
        return match.keys
    sel = np.isin(run.t.tg, match.g) & np.isin(run.t.tk, np.array(keys, dtype=object))
    return run.t.tg[sel], run.t.tk[sel]


@action_op("delete_tag", optional={"keys"}, removing=True)
def delete_tag(run, rule, match: Match) -> None:
    per_key = defaultdict(list)
    gs, ks = _target_tags(run, rule, match)
    for g, k in zip(gs.tolist(), ks.tolist()):
        run.del_tags[g].add(k)
        per_key[k].append(g)
    for k, gs in sorted(per_key.items()):
        run.audit.record(rule.id, "delete_tag", run.t, np.array(gs), f"removed tag {k!r}")


@action_op("relativise_round", optional={"step_m", "key"}, removing=True)
def relativise_round(run, rule, match: Match) -> None:
    """Absolute elevation -> height above the map's lowest point, rounded to ``step_m`` (the absolute datum
    is removed; values that are not numbers are simply removed)."""
    t = run.t
    step = float(rule.action.get("step_m", 0.5))
    key_out = rule.action.get("key", "ele_rel")
    gs, ks = _target_tags(run, rule, match)
    vals = np.full(len(gs), np.nan)
    vtab = dict(zip(zip(t.tg.tolist(), t.tk.tolist()), t.tv.tolist()))
    for i, (g, k) in enumerate(zip(gs.tolist(), ks.tolist())):
        try:
            vals[i] = float(vtab[(g, k)])
        except (TypeError, ValueError):
            pass
    ok = np.isfinite(vals)
    base = np.nanmin(vals) if ok.any() else 0.0
    rel = np.round((vals - base) / step) * step
    for i, (g, k) in enumerate(zip(gs.tolist(), ks.tolist())):
        run.del_tags[g].add(k)
        if ok[i]:
            run.add_tags[g][key_out] = np.format_float_positional(rel[i], trim="-")
    run.audit.record(rule.id, "relativise_round", t, np.unique(gs),
                     f"absolute elevation replaced by {key_out!r} (relative to the map minimum, step {step} m)")


@action_op("flag_review")
def flag_review(run, rule, match: Match) -> None:
    run.flags.append((rule, match.g))


@action_op("block_publish", removing=True)
def block_publish(run, rule, match: Match) -> None:
    run.blocks.append((rule, match.g, match.keys))  # judged on what survives, after the cascade
