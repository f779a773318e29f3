"""One report's 14 CheXpert labels: which text is read, its mentions, and how they add up.

The text read (``sections``/``read``):
- ``impression`` (CheXpert's rule): the IMPRESSION, else the FINDINGS, else the last paragraph.
- ``findings_impression``: FINDINGS and IMPRESSION together (what Open-i's coders read), else the
  last paragraph.
Each label's mentions add up as in the CheXpert labeler: positive over uncertain over negative,
blank when not mentioned. No Finding is 1 when nothing but Support Devices is positive or
uncertain (abnormalities outside the 14 labels count too, see ``vocabulary.OTHER_FINDINGS``), and
blank otherwise. A report with nothing to read (section ``none``: no findings, impression or last
paragraph, or only de-identification tokens) mentions no finding, so, as in the CheXpert labeler,
its No Finding is 1 and the other 13 labels are blank (Open-i's coders code such reports "normal").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from cxr_helpers.labeler.mentions import find_mentions
from cxr_helpers.labeler.text import prepare
from cxr_helpers.labeler.vocabulary import DEVICES_THAT_ARE_FINDINGS, FINDING_LABELS, OTHER_FINDING
from cxr_helpers.labels import CHEXPERT_LABELS, NEGATIVE, POSITIVE, UNCERTAIN
from cxr_helpers.reports import find_headers, last_paragraph_span

READ_OPTIONS = ("impression", "findings_impression")
NOTHING_READ = "none"
_PART_SEPARATOR = "\n\n"  # between the sections joined by label_sections (a paragraph break: a sentence end)
_WORD = re.compile(r"[a-z]{2,}")
_DEVICE_FINDING = re.compile(r"\b(?:" + DEVICES_THAT_ARE_FINDINGS + r")\b")


@dataclass(frozen=True)
class Mention:
    """One mention: label, character offsets into the text read, code (1 / 0 / -1), its words, its section.

    ``cue`` is what decided the code: the negation or hedge words, or the size word of a generic
    heart phrase ("" when a plain mention is positive). ``label`` is one of the 14 CheXpert names,
    or ``"Other Finding"`` for an abnormality outside them (it only blocks No Finding).
    """

    label: str
    start: int
    end: int
    code: int
    text: str
    section: str
    cue: str = ""

    def as_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return asdict(self)


@dataclass(frozen=True)
class ReportLabels:
    """The labels of one report, the evidence for them, and which section was read.

    ``labels``: the 14 CheXpert names (in CheXpert order) -> 1.0 / 0.0 / -1.0 / None (blank).
    ``mentions``: every mention found, in text order; offsets index ``text``.
    ``section``: impression / findings / last_paragraph / findings_impression / none.
    ``text``: the text the offsets refer to (the original report for ``label_report``).
    """

    labels: dict[str, float | None]
    mentions: list[Mention]
    section: str
    text: str


def _check_option(read: str) -> None:
    """Raise a clear error for an unknown sections option."""
    if read not in READ_OPTIONS:
        raise ValueError(f"sections must be one of {READ_OPTIONS}, got {read!r}")


def choose_parts(available: dict[str, list[tuple[int, int]]], read: str) -> tuple[str, list[str]]:
    """Which sections to read, given the non-empty ones: (section name reported, section names in order)."""
    _check_option(read)
    has = {name for name, spans in available.items() if spans}
    if read == "impression":
        for name in ("impression", "findings"):
            if name in has:
                return name, [name]
    else:
        chosen = [name for name in ("findings", "impression") if name in has]
        if chosen:
            return ("findings_impression" if len(chosen) == 2 else chosen[0]), chosen
    if "last_paragraph" in has:
        return "last_paragraph", ["last_paragraph"]
    return NOTHING_READ, []


def report_spans(text: str, read: str = "impression") -> tuple[str, list[tuple[str, int, int]]]:
    """The section read from a raw report and its character spans: (section, [(name, start, end), ...])."""
    available: dict[str, list[tuple[int, int]]] = {"findings": [], "impression": []}
    for header in find_headers(text):
        if header.name in available and text[header.content_start : header.content_end].strip():
            available[header.name].append((header.content_start, header.content_end))
    if not available["findings"] and not available["impression"]:
        span = last_paragraph_span(text)
        available["last_paragraph"] = [span] if span else []
    section, names = choose_parts(available, read)
    spans = sorted((start, end, name) for name in names for start, end in available[name])
    return section, [(name, start, end) for start, end, name in spans]


def label_report(text: str, sections: str = "impression") -> ReportLabels:
    """Labels of a raw report (MIMIC-style, with headers); mention offsets index the original text."""
    section, spans = report_spans(text or "", sections)
    return _label_spans(text or "", section, spans)


def label_sections(sections: dict[str, str], read: str = "impression") -> ReportLabels:
    """Labels of a report already split into sections (e.g. Open-i's findings / impression fields).

    The sections read are joined with a blank line into ``ReportLabels.text``, which the mention
    offsets index. Missing, None or NaN sections count as empty.
    """
    texts = {
        name: value.strip() for name, value in sections.items() if isinstance(value, str) and value.strip()
    }
    section, names = choose_parts({name: [(0, 0)] for name in texts}, read)
    joined, spans, position = "", [], 0
    for name in names:
        if joined:
            joined += _PART_SEPARATOR
            position += len(_PART_SEPARATOR)
        spans.append((name, position, position + len(texts[name])))
        joined += texts[name]
        position += len(texts[name])
    return _label_spans(joined, section, spans)


def _label_spans(text: str, section: str, spans: list[tuple[str, int, int]]) -> ReportLabels:
    """Mentions in each span of ``text`` (each span read on its own) and the labels they add up to."""
    prepared = prepare(text)
    if not any(_WORD.search(prepared, start, end) for _, start, end in spans):
        return ReportLabels(aggregate([]), [], NOTHING_READ, text)
    mentions = []
    for name, start, end in spans:
        for found in find_mentions(text[start:end], prepared[start:end]):
            begin, finish = start + found.start, start + found.end
            mentions.append(
                Mention(found.label, begin, finish, found.code, text[begin:finish], name, found.cue)
            )
    return ReportLabels(aggregate(mentions), mentions, section, text)


def aggregate(mentions: list[Mention]) -> dict[str, float | None]:
    """The 14 labels from the mentions: positive over uncertain over negative; No Finding as computed."""
    codes: dict[str, set[int]] = {}
    for mention in mentions:
        codes.setdefault(mention.label, set()).add(mention.code)
    labels: dict[str, float | None] = {}
    for label in FINDING_LABELS:
        found = codes.get(label, set())
        labels[label] = next((float(code) for code in (POSITIVE, UNCERTAIN, NEGATIVE) if code in found), None)
    abnormal = any(
        codes.get(label, set()) & {POSITIVE, UNCERTAIN}
        for label in (*FINDING_LABELS, OTHER_FINDING)
        if label != "Support Devices"
    ) or any(
        mention.label == "Support Devices"
        and mention.code in (POSITIVE, UNCERTAIN)
        and _DEVICE_FINDING.search(mention.text.lower())
        for mention in mentions
    )
    labels["No Finding"] = None if abnormal else 1.0
    return {label: labels[label] for label in CHEXPERT_LABELS}
