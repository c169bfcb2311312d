"""The desensitisation rule set: YAML data, validated when loaded (a bad file is a one-line error).

Checks and actions are looked up in the registries of :mod:`desensitize.operations` by their ``op`` name, so a
new rule is a new YAML entry; a new *kind* of check or action is one function registered there.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from desensitize.errors import DesensitizeError
from desensitize.operations import ACTION_OPS, CHECK_OPS

DEFAULT_RULES = Path(__file__).resolve().parent / "rules" / "default.yaml"
CLASSES = ("node", "line_string", "lanelet", "area", "regulatory_element", "relation")
SEVERITIES = ("A", "B", "C", "D")
LAYERS = ("restricted_areas",)


@dataclass
class Rule:
    id: str
    source: dict
    description: str
    on: frozenset
    check: dict
    action: dict
    severity: str
    patterns: list = field(default_factory=list)  # compiled text_match patterns

    @property
    def removing(self) -> bool:
        """Its result must be absent from the published tiles (the final scan checks these rules)."""
        return ACTION_OPS[self.action["op"]].removing

    def applies_to(self, cls: str) -> bool:
        return "any" in self.on or cls in self.on


@dataclass
class RuleSet:
    path: str
    sha256: str
    rules: list[Rule]
    position_copies: list[str]
    required_roles: dict[str, list[str]]

    def describe(self) -> dict:
        return {"file": Path(self.path).name, "sha256": self.sha256, "rules": [r.id for r in self.rules]}


def _fail(path, where, msg):
    raise DesensitizeError(f"{path}: {where}: {msg}")


def _strs(path, where, value, what):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        _fail(path, where, f"{what} must be a non-empty list of strings")
    return value


def _tagspec(path, where, value, what):
    if not isinstance(value, dict) or not value:
        _fail(path, where, f"{what} must be a mapping key -> list of values or \"*\"")
    for k, v in value.items():
        if not isinstance(k, str) or not (v == "*" or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))):
            _fail(path, where, f"{what}: {k!r} must map to a list of strings or \"*\"")
    return value


def _op(path, where, spec, ops, what):
    if not isinstance(spec, dict) or "op" not in spec:
        _fail(path, where, f"{what} must be a mapping with 'op'")
    op = spec["op"]
    if op not in ops:
        _fail(path, where, f"unknown {what} op {op!r} (known: {', '.join(ops)})")
    required, optional = ops[op].required, ops[op].optional
    params = set(spec) - {"op"}
    if required - params:
        _fail(path, where, f"{what} {op!r} needs {', '.join(sorted(required - params))}")
    if params - required - optional:
        _fail(path, where, f"{what} {op!r} does not take {', '.join(sorted(params - required - optional))}")
    return op


def load_rules(path: str | Path | None = None) -> RuleSet:
    path = Path(path) if path else DEFAULT_RULES
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DesensitizeError(f"{path}: cannot read rules file: {exc.strerror}") from None
    try:
        doc = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark else "YAML"
        raise DesensitizeError(f"{path}: {at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("rules"), list):
        _fail(path, "top level", "expected a mapping with 'version: 1' and a 'rules' list")
    unknown = set(doc) - {"version", "rules", "position_copies", "required_roles"}
    if unknown:
        _fail(path, "top level", f"unknown keys {', '.join(sorted(unknown))}")
    copies = _strs(path, "position_copies", doc.get("position_copies", ["local_x", "local_y"]), "position_copies")
    roles = doc.get("required_roles", {"default": ["refers"]})
    if not isinstance(roles, dict) or not all(isinstance(v, list) for v in roles.values()):
        _fail(path, "required_roles", "must map a regulatory-element subtype to a list of roles")
    rules, seen = [], set()
    for i, entry in enumerate(doc["rules"]):
        where = f"rule #{i + 1}"
        if not isinstance(entry, dict):
            _fail(path, where, "must be a mapping")
        rid = entry.get("id")
        if not isinstance(rid, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", rid):
            _fail(path, where, "needs an 'id' like SEC-09")
        where = f"rule {rid}"
        if rid in seen:
            _fail(path, where, "duplicate id")
        seen.add(rid)
        missing = {"source", "target", "check", "action", "severity"} - set(entry)
        if missing:
            _fail(path, where, f"missing {', '.join(sorted(missing))}")
        extra = set(entry) - {"id", "source", "target", "check", "action", "severity", "description"}
        if extra:
            _fail(path, where, f"unknown keys {', '.join(sorted(extra))}")
        source = entry["source"]
        if not isinstance(source, dict) or not source.get("doc") or "clause" not in source:
            _fail(path, where, "source must name 'doc' and 'clause'")
        target = entry["target"]
        if isinstance(target, dict) and True in target and "on" not in target:
            target = {"on": target.pop(True), **target}  # YAML 1.1 reads a bare `on:` key as boolean true
        if not isinstance(target, dict) or not isinstance(target.get("on"), list) or not target["on"]:
            _fail(path, where, "target must have 'on': a list of element classes")
        bad = set(target["on"]) - set(CLASSES) - {"any"}
        if bad:
            _fail(path, where, f"unknown element class {', '.join(sorted(bad))} (known: {', '.join(CLASSES)}, any)")
        check, action = entry["check"], entry["action"]
        cop = _op(path, where, check, CHECK_OPS, "check")
        aop = _op(path, where, action, ACTION_OPS, "action")
        patterns = []
        if cop == "tag_present":
            _strs(path, where, check["keys"], "check.keys")
        elif cop == "tag_match":
            _tagspec(path, where, check["tags"], "check.tags")
        elif cop == "text_match":
            for p in _strs(path, where, check["patterns"], "check.patterns"):
                try:
                    patterns.append(re.compile(p))
                except re.error as exc:
                    _fail(path, where, f"bad pattern {p!r}: {exc}")
            if "keys" in check:
                _strs(path, where, check["keys"], "check.keys")
        elif cop == "intersects" and check["layer"] not in LAYERS:
            _fail(path, where, f"unknown layer {check['layer']!r} (known: {', '.join(LAYERS)})")
        if "when" in check:
            _tagspec(path, where, check["when"], "check.when")
        if aop == "delete_tag" and cop not in ("tag_present",) and "keys" not in action:
            _fail(path, where, "delete_tag needs action.keys unless the check is tag_present")
        if aop == "delete_tag" and "keys" in action:
            _strs(path, where, action["keys"], "action.keys")
        if aop == "relativise_round":
            step = action.get("step_m", 0.5)
            if not isinstance(step, (int, float)) or step <= 0:
                _fail(path, where, "relativise_round step_m must be a positive number")
            if cop != "tag_present":
                _fail(path, where, "relativise_round needs a tag_present check (the elevation keys)")
        if cop == "intersects" and aop not in ("delete_feature", "flag_review", "block_publish"):
            _fail(path, where, f"an intersects check cannot {aop}")
        sev = entry["severity"]
        if sev not in SEVERITIES:
            _fail(path, where, f"severity must be one of {', '.join(SEVERITIES)}")
        rules.append(Rule(rid, source, str(entry.get("description", "")), frozenset(target["on"]), check,
                          action, sev, patterns))
    return RuleSet(str(path), hashlib.sha256(raw).hexdigest(), rules, list(copies),
                   {str(k): [str(r) for r in v] for k, v in roles.items()})
