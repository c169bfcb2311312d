"""The audit trail of one desensitisation: for every action, the rule id, the element ids and what was done.

It never holds a coordinate or a removed value (an ``ele`` value is a true height): only ids, keys, rule ids
and fixed texts. It is stored with the release as a *restricted* attachment (never served to vehicles).
"""
from __future__ import annotations

import json
import time

import numpy as np

_KINDS = ("node", "way", "relation")


class Audit:
    def __init__(self):
        self.entries: list[dict] = []

    def record(self, rule: str, action: str, table, g: np.ndarray, detail: str) -> None:
        g = np.unique(np.asarray(g, np.int64))
        if not len(g):
            return
        kind, _ = table.kind_row(g)
        ids = table.ids(g)
        for k in np.unique(kind).tolist():
            sel = kind == k
            self.entries.append({"rule": rule, "action": action, "element": _KINDS[k],
                                 "ids": sorted(ids[sel].tolist()), "detail": detail})

    def note(self, rule: str, action: str, detail: str) -> None:
        self.entries.append({"rule": rule, "action": action, "element": None, "ids": [], "detail": detail})

    def to_json(self, **header) -> bytes:
        doc = {"format": "mapsvc-desensitisation-audit/1",
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               **header, "actions": self.entries}
        return json.dumps(doc, ensure_ascii=False, indent=1).encode()

    def count(self, rule: str | None = None, action: str | None = None) -> int:
        return sum(len(e["ids"]) for e in self.entries
                   if (rule is None or e["rule"] == rule) and (action is None or e["action"] == action))
