"""Showing the evidence: a report with its mentions highlighted (HTML), and one JSON line per report."""

from __future__ import annotations

import html
import json

from cxr_helpers.labeler.labeler import Mention, ReportLabels
from cxr_helpers.labels import NEGATIVE, POSITIVE, UNCERTAIN

CODE_NAMES = {POSITIVE: "positive", NEGATIVE: "negative", UNCERTAIN: "uncertain"}
CODE_COLOURS = {POSITIVE: "#f4a3a3", NEGATIVE: "#a8d8a8", UNCERTAIN: "#f7d98b"}  # red, green, amber


def _legend() -> str:
    """The colour legend."""
    items = "".join(
        f'<span style="background:{CODE_COLOURS[code]};padding:0 4px;margin-right:8px">'
        f"{CODE_NAMES[code]}</span>"
        for code in (POSITIVE, UNCERTAIN, NEGATIVE)
    )
    return f'<div style="margin-bottom:4px;font-size:90%">{items}</div>'


def evidence_html(text: str, mentions: list[Mention]) -> str:
    """The report as HTML (escaped, line breaks kept) with each mention coloured by its code, and a legend.

    Mentions sharing characters (one phrase, two labels) are drawn once; the hover title lists every
    label and code. Offsets must index ``text`` (as ``ReportLabels.mentions`` index ``ReportLabels.text``).
    """
    spans: list[tuple[int, int, list[Mention]]] = []
    for mention in sorted(mentions, key=lambda m: (m.start, -m.end)):
        if spans and mention.start < spans[-1][1]:
            spans[-1][2].append(mention)  # overlaps the previous span: listed in its title
            continue
        spans.append((mention.start, mention.end, [mention]))
    parts, position = [], 0
    for start, end, group in spans:
        parts.append(html.escape(text[position:start]))
        code = max((m.code for m in group), key=lambda c: (c == POSITIVE, c == UNCERTAIN))
        title = "; ".join(
            f"{m.label}: {CODE_NAMES[m.code]}" + (f" ({m.cue})" if m.cue else "") for m in group
        )
        parts.append(
            f'<mark style="background:{CODE_COLOURS[code]}" title="{html.escape(title, quote=True)}">'
            f"{html.escape(text[start:end])}</mark>"
        )
        position = max(position, end)
    parts.append(html.escape(text[position:]))
    body = "".join(parts)
    return f'{_legend()}<div style="white-space:pre-wrap;font-family:monospace">{body}</div>'


def evidence_record(report_id: int | str, origin: str, result: ReportLabels) -> str:
    """One JSON line: the report's id, origin, section read and its mentions (offsets into the text read)."""
    record = {
        "id": report_id,
        "origin": origin,
        "section": result.section,
        "mentions": [mention.as_dict() for mention in result.mentions],
    }
    return json.dumps(record, ensure_ascii=False)
