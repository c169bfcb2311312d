"""Render a report dictionary (report.json) as JSON, HTML (Jinja2) or PDF (ReportLab), in English or Chinese.

Order, as a surveyor reads it: verdict, a table per quality element, each finding (worst first, with a
small matplotlib map of where it is), the desensitisation summary, the metadata, then sign-off lines.
Maps are drawn from the finding's ``sketch`` (line work relative to the finding, metres); in a public
report that sketch is already generalised to the 50 m grid, and no axis shows a coordinate.
"""
from __future__ import annotations

import base64
import io
import json
from functools import lru_cache
from pathlib import Path

import yaml

from standards.errors import StandardsError

HERE = Path(__file__).parent
LANGS = ("en", "zh")
FORMATS = ("json", "html", "pdf")


def language(tag: str) -> str:
    """A catalogue for a language tag: "zh-CN", "zh_Hans" -> zh; "en-GB" -> en."""
    base = str(tag or "en").replace("_", "-").split("-")[0].lower()
    if base not in LANGS:
        raise StandardsError(f"report language {tag!r}: choose one of {', '.join(LANGS)}")
    return base


@lru_cache(maxsize=4)
def messages(lang: str) -> dict:
    lang = language(lang)
    if lang not in LANGS:
        raise StandardsError(f"report language {lang!r}: choose one of {', '.join(LANGS)}")
    with open(HERE / "messages" / f"{lang}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def attachment_name(fmt: str, lang: str = "en") -> str:
    """The release attachment a rendered report is stored as: report.json (language-free), report.LANG.FMT."""
    if fmt not in FORMATS:
        raise StandardsError(f"report format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return "report.json" if fmt == "json" else f"report.{language(lang)}.{fmt}"


def render(report: dict, fmt: str, lang: str = "en") -> bytes:
    if fmt not in FORMATS:
        raise StandardsError(f"report format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        language(lang)
        return json.dumps(report, ensure_ascii=False, indent=1).encode()
    lang = language(lang)
    view = _view(report, messages(lang))
    return _html(view, lang) if fmt == "html" else _pdf(view, lang)


# -- the view both renderers use -----------------------------------------------------------------------
def _view(report: dict, t: dict) -> dict:
    v = report["verdict"]
    reasons = []
    for r in v.get("reasons", []):
        tmpl = t["reason"].get(r["rule"], r["rule"])
        args = {**r, "elements": ", ".join(t["elements_names"].get(e, e) for e in r.get("elements", []))}
        reasons.append(tmpl.format(**args))
    check_desc = t.get("checks", {})
    checks = report.get("checks", [])
    elements = []
    for e in report.get("elements", []):
        rows = [{"id": c["id"], "severity": t["severities"].get(c["severity"], c["severity"]),
                 "description": check_desc.get(c["id"], c["description"]),
                 "count": c["count"] if c["applicable"] else t["not_applicable"],
                 "checked": c["checked"] if c["applicable"] else "",
                 "stats": ", ".join(f"{k}={val}" for k, val in (c.get("stats") or {}).items())}
                for c in checks if c["element"] == e["id"]]
        elements.append({"name": t["elements_names"].get(e["id"], e["id"]), "weight": e["weight"],
                         "score": e["score"] if e["evaluated"] else t["not_evaluated"], "checks": rows})
    limit = report.get("grading", {}).get("max_listed_findings", 300)
    findings = report.get("findings", [])
    listed = [f for f in findings if f["severity"] != "info"][:limit]
    hidden = len(findings) - len(listed)
    shown = []
    for f in listed:
        loc = f.get("location") or {}
        if "lon" in loc:
            where = f"{loc['lat']:.{4 if 'precision_m' in loc else 7}f}, {loc['lon']:.{4 if 'precision_m' in loc else 7}f}"
        elif "x" in loc:
            where = f"x {loc['x']:.1f} m, y {loc['y']:.1f} m"
        else:
            where = "—"
        shown.append({**f, "sev_label": t["severities"].get(f["severity"], f["severity"]), "where": where,
                      "png": _map_png(f["sketch"]) if f.get("sketch") else None})
    md = report.get("metadata", {})
    meta_rows = [(t[k], md.get(k) or t["missing"]) for k in
                 ("review_no", "review_expiry", "qualification_no", "producer", "offset_provider")]
    subj = report.get("subject", {})
    return {"t": t, "report": report, "verdict": v, "result": t["result"][v["result"]],
            "grade": t["grade"].get(v["grade"], v["grade"]), "reasons": reasons, "elements": elements,
            "findings": shown, "hidden": hidden, "desens": report.get("desensitisation"), "meta_rows": meta_rows,
            "subject": subj, "audience": t["audience"][report.get("audience", "internal")]}


def _map_png(sketch: dict) -> bytes:
    """A small map of a finding: line work around it, the finding marked; scale bar, no coordinates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    half = float(sketch["half_m"])
    fig, ax = plt.subplots(figsize=(2.2, 2.2), dpi=90)
    for line in sketch["lines"]:
        if len(line) >= 2:
            xs, ys = zip(*line)
            ax.plot(xs, ys, color="#555555", linewidth=0.8)
    if sketch.get("marker") == "cell":
        c = float(sketch["cell_m"])
        ax.add_patch(Rectangle((-c / 2, -c / 2), c, c, facecolor="#d62728", alpha=0.35, edgecolor="#d62728"))
    else:
        ax.plot([0], [0], marker="o", markersize=9, markerfacecolor="none", markeredgecolor="#d62728", mew=2)
    bar = 10.0 if half <= 50 else 100.0
    ax.plot([-half * 0.9, -half * 0.9 + bar], [-half * 0.9] * 2, color="black", linewidth=2)
    ax.text(-half * 0.9, -half * 0.82, f"{bar:.0f} m", fontsize=7)
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# -- HTML -------------------------------------------------------------------------------------------------
def _html(view: dict, lang: str) -> bytes:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["b64"] = lambda b: base64.b64encode(b).decode()
    return env.get_template("report.html.j2").render(lang=lang, **view).encode("utf-8")


# -- PDF --------------------------------------------------------------------------------------------------
def _pdf(view: dict, lang: str) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    from functools import partial
    from html import escape as html_escape

    escape = partial(html_escape, quote=False)  # &, < and > only: what ReportLab's paragraph markup needs

    # A CJK font in both languages: English labels quote Chinese terms (审图号, 检查者).
    font = _cjk_font(pdfmetrics, UnicodeCIDFont)
    ss = getSampleStyleSheet()
    body = ParagraphStyle("b", parent=ss["BodyText"], fontName=font, fontSize=8.5, leading=11, wordWrap="CJK")
    small = ParagraphStyle("s", parent=body, fontSize=7.5, leading=9.5)
    h1 = ParagraphStyle("h1", parent=ss["Title"], fontName=font, fontSize=17, leading=21)
    h2 = ParagraphStyle("h2", parent=ss["Heading2"], fontName=font, fontSize=12, leading=15, spaceBefore=8)
    big = ParagraphStyle("big", parent=body, fontSize=15, leading=19)
    t = view["t"]
    P = lambda s, st=body: Paragraph(escape(str(s)), st)  # noqa: E731
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("FONTNAME", (0, 0), (-1, -1), font),
                       ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                       ("VALIGN", (0, 0), (-1, -1), "TOP")])
    W = A4[0] - 30 * mm
    story = [P(t["title"], h1), P(t["subtitle"], body), Spacer(1, 4 * mm)]
    subj = view["subject"]
    kind = t["release"] if subj.get("kind") == "release" else t["map"]
    colour = "#1a7f37" if view["verdict"]["result"] == "pass" else "#c62828"
    story.append(Paragraph(f'{escape(t["verdict"])}: <font color="{colour}"><b>{escape(view["result"])}</b></font>'
                           f' &nbsp; {escape(t["grade_label"])}: {escape(view["grade"])} &nbsp; '
                           f'{escape(t["score"])}: {view["verdict"]["score"]}', big))
    for r in view["reasons"]:
        story.append(P("• " + r))
    story.append(P(f'{kind}: {subj.get("name")}  ·  {t["created"]}: {view["report"].get("created")}  ·  '
                   f'{view["audience"]}', small))
    story.append(P(t["elements_title"], h2))
    for e in view["elements"]:
        story.append(P(f'{e["name"]} — {t["element_score"]}: {e["score"]} ({t["weight"]} {e["weight"]})', body))
        rows = [[P(t["check"], small), P(t["severity"], small), P(t["description"], small), P(t["count"], small),
                 P(t["checked"], small)]]
        for c in e["checks"]:
            desc = c["description"] + (f' [{c["stats"]}]' if c["stats"] else "")
            rows.append([P(c["id"], small), P(c["severity"], small), P(desc, small), P(c["count"], small),
                         P(c["checked"], small)])
        tb = Table(rows, colWidths=[W * 0.26, W * 0.1, W * 0.46, W * 0.08, W * 0.1], repeatRows=1)
        tb.setStyle(grid)
        story += [tb, Spacer(1, 2 * mm)]
    story.append(P(t["findings_title"], h2))
    if not view["findings"]:
        story.append(P(t["no_findings"]))
    for f in view["findings"]:
        text = [P(f'<b>{f["sev_label"]}</b> · {f["check"]}', small), P(f'{f["kind"]} {f["id"]}', small),
                P(f["detail"], small), P(f'{t["location"]}: {f["where"]}', small)]
        text[0] = Paragraph(f'<b>{escape(f["sev_label"])}</b> · {escape(f["check"])}', small)
        if f["png"]:
            cells = [[Image(io.BytesIO(f["png"]), width=32 * mm, height=32 * mm), text]]
            tb = Table(cells, colWidths=[35 * mm, W - 35 * mm])
        else:
            tb = Table([[text]], colWidths=[W])
        tb.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LINEBELOW", (0, 0), (-1, -1), 0.3,
                                                                        colors.lightgrey)]))
        story.append(KeepTogether(tb))
    if view["hidden"]:
        story.append(P(t["more_findings"].format(n=view["hidden"]), small))
    story.append(P(t["desens_title"], h2))
    story += _desens_flowables(view, P, small, grid, W)
    story.append(P(t["metadata_title"], h2))
    tb = Table([[P(k, small), P(v, small)] for k, v in view["meta_rows"]], colWidths=[W * 0.4, W * 0.6])
    tb.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey)]))
    story.append(tb)
    story.append(P(t["signoff_title"], h2))
    sign = [[P(t["inspector"]), P(t["signature"] + ": ______________________"), P(t["date"] + ": ____________")],
            [P(t["acceptor"]), P(t["signature"] + ": ______________________"), P(t["date"] + ": ____________")]]
    tb = Table(sign, colWidths=[W * 0.3, W * 0.45, W * 0.25], rowHeights=[14 * mm, 14 * mm])
    story.append(tb)

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.drawString(15 * mm, 8 * mm, f'{t["title"]} · {subj.get("name")} · {t["page"]} {doc.page}')
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=14 * mm,
                            bottomMargin=14 * mm, title=t["title"], author="mapsvc standards")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


# Embedded TrueType CJK fonts, first found wins (glyphs travel with the PDF); else ReportLab's built-in CID
# font STSong-Light, which needs no file but relies on the viewer having a Chinese font.
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/truetype/arphic/uming.ttc")


def _cjk_font(pdfmetrics, UnicodeCIDFont) -> str:
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    if "mapsvc-cjk" in pdfmetrics.getRegisteredFontNames():
        return "mapsvc-cjk"
    for path in CJK_FONTS:
        if Path(path).exists():
            try:
                pdfmetrics.registerFont(TTFont("mapsvc-cjk", path, subfontIndex=0))
                return "mapsvc-cjk"
            except (TTFError, OSError):  # a font ReportLab cannot read (e.g. CFF outlines): try the next
                continue
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light"


def _desens_flowables(view, P, small, grid, W):
    from reportlab.platypus import Table

    t, d = view["t"], view["desens"]
    if not d:
        return [P(t["desens_none"], small)]
    prov = d.get("provider") or {}
    rows = [[P(t["profile"], small), P(d.get("profile") or "—", small)],
            [P(t["provider"], small), P(f'{prov.get("name")} {prov.get("version") or ""}', small)],
            [P(t["certified"], small), P(t["answer_yes"] if d.get("certified") else t["answer_no"], small)],
            [P(t["points_moved"], small), P(prov.get("points_moved"), small)],
            [P(t["points_outside"], small), P(prov.get("points_outside_region"), small)],
            [P(t["rules_applied"], small), P(", ".join(d.get("rules") or []) or "—", small)],
            [P(t["removed"], small), P(json.dumps(d.get("removed"), ensure_ascii=False), small)],
            [P(t["flagged"], small), P(len(d.get("flagged_for_review") or []), small)]]
    tb = Table(rows, colWidths=[W * 0.35, W * 0.65])
    tb.setStyle(grid)
    out = [tb]
    if d.get("audit_counts"):
        rows = [[P(t["rule"], small), P(t["action"], small), P(t["elements_n"], small)]] + \
               [[P(a["rule"], small), P(a["action"], small), P(a["elements"], small)] for a in d["audit_counts"]]
        tb = Table(rows, colWidths=[W * 0.3, W * 0.4, W * 0.3])
        tb.setStyle(grid)
        out += [P(t["audit_counts"], small), tb]
    return out
