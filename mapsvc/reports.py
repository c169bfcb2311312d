"""Reports are rendered once, when they are made, and kept with the release (issue 14: a PDF costs seconds of
CPU; rendered per request it starved the workers that serve tiles). Serving one is a read of a stored file.

``store_report`` is the one way `mapsvc check --release` and the demo store a report: report.json, then
report.{en,zh}.{html,pdf} rendered from the *stored* report.json, so what is served always matches it.
Attachments are immutable: ones already there are kept, missing ones are added (a second run completes a
release checked before reports were pre-rendered, or one whose rendering was interrupted).
"""
from __future__ import annotations

import json

from standards.report import FORMATS, LANGS, attachment_name, render
from tiles.errors import StoreError


def report_attachments() -> list[tuple[str, str, str]]:
    """(attachment key, format, language) of every stored rendering, report.json first."""
    out = [(attachment_name("json"), "json", "en")]
    out += [(attachment_name(fmt, lang), fmt, lang) for fmt in FORMATS if fmt != "json" for lang in LANGS]
    return out


def store_report(store, release: str, report_json: bytes, rendered: dict | None = None) -> dict[str, bool]:
    """Store a release's report and its renderings; {attachment: newly stored?}. The report.json already
    stored, if any, wins (the caller may say so to the user). ``rendered`` ({(fmt, lang): bytes}) are
    renderings the caller already made of ``report_json``, reused when that is the stored report."""
    added = {}
    try:
        store.add_attachment(release, attachment_name("json"), report_json, False)
        added[attachment_name("json")] = True
    except StoreError:
        added[attachment_name("json")] = False
    stored_raw = store.attachment(release, attachment_name("json"))
    reuse = rendered if rendered and stored_raw == report_json else {}
    stored = json.loads(stored_raw)
    for key, fmt, lang in report_attachments()[1:]:
        try:
            store.attachment(release, key)
            added[key] = False
            continue
        except StoreError:
            pass
        try:
            data = reuse.get((fmt, lang)) or render(stored, fmt, lang)
            store.add_attachment(release, key, data, False)
            added[key] = True
        except StoreError:  # another run stored it meanwhile: same report, same rendering
            added[key] = False
    return added
