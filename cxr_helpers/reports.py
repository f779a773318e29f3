"""Radiology report text: section extraction, the paper's cleaning, and the two text settings.

MIMIC-CXR reports are free text with upper-case headers (``INDICATION:``, ``FINDINGS:``,
``IMPRESSION:`` ...), often after a ``FINAL REPORT`` line. Header spelling varies, so every
header is mapped to a lower-case canonical name:

- ``INDICATION``, ``REASON FOR EXAM(INATION)``, ``CLINICAL INDICATION`` -> ``indication``;
  ``HISTORY``, ``CLINICAL HISTORY`` -> ``history`` and are also appended to ``indication``
  (so ``indication`` is "why the study was ordered", whatever the header was called).
- ``CONCLUSION(S)``, ``IMPRESSIONS``, ``SUMMARY`` -> ``impression``.
- ``FINDINGS AND IMPRESSION`` (and ``FINDINGS/IMPRESSION``) -> ``impression`` only, as in the
  MIMIC-CXR section parser: the CheXpert labeler reads the impression first, and findings +
  impression then holds the text once, not twice.
- Unknown headers written in capitals become their own section (``WET READ`` -> ``wet_read``).
- Text before the first header (minus the ``FINAL REPORT`` line) is ``preamble``.
- The short sections (indication, history, comparison, technique, examination) hold one
  paragraph; further paragraphs before the next header are ``body`` (headerless findings,
  as in reports without a FINDINGS header), so the indication setting never takes in findings text.
- When a report has neither findings nor impression, ``last_paragraph`` holds its last
  paragraph: what the CheXpert labeler read for those reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cxr_helpers.config import TEXT_SETTINGS

# Normalised header text -> canonical section name.
SECTION_ALIASES: dict[str, str] = {
    "indication": "indication",
    "indications": "indication",
    "clinical indication": "indication",
    "clinical information": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "reason for the exam": "indication",
    "reason for study": "indication",
    "history": "history",
    "clinical history": "history",
    "medical history": "history",
    "brief history": "history",
    "comparison": "comparison",
    "comparisons": "comparison",
    "technique": "technique",
    "techniques": "technique",
    "procedure": "technique",
    "examination": "examination",
    "exam": "examination",
    "study": "examination",
    "type of examination": "examination",
    "findings": "findings",
    "finding": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "findings and impression": "impression",
    "findings and impressions": "impression",
    "impression and findings": "impression",
    "recommendation": "recommendations",
    "recommendations": "recommendations",
    "notification": "notification",
    "wet read": "wet_read",
    "addendum": "addendum",
}
# Canonical sections whose text also goes into ``indication`` (the indication-only text setting).
INDICATION_SOURCES = ("indication", "history")
# Sections that hold one paragraph: text after it (before the next header) is ``body``, so a
# headerless findings paragraph after ``INDICATION: ...`` never leaks into the indication.
ONE_PARAGRAPH_SECTIONS = ("indication", "history", "comparison", "technique", "examination")
# Sections the paper's text model reads (and the CheXpert labeler read the labels from).
LABEL_SOURCE_SECTIONS = ("findings", "impression", "last_paragraph")

# A header: at the start of a line, letters/spaces/()/&-' then a colon. Checked against
# SECTION_ALIASES (any case) or accepted as a new section when written in capitals.
_HEADER = re.compile(r"^[ \t]*(?P<label>[A-Za-z][A-Za-z /&()'\-]{1,60}?)[ \t]*:", re.MULTILINE)
# A known header alone on its line without a colon, in capitals (``IMPRESSION``).
_BARE_HEADER = re.compile(r"^[ \t]*(?P<label>[A-Z][A-Z /&]{2,40}?)[ \t]*$", re.MULTILINE)
_FINAL_REPORT = re.compile(r"^[ \t]*FINAL REPORT[ \t]*$", re.MULTILINE | re.IGNORECASE)
# A known header in capitals anywhere in a line ("COMPARISON: None. FINDINGS: IMPRESSION:"): only used to
# trim the last paragraph, so that a report whose sections are all empty has no last paragraph.
_INLINE_HEADER = re.compile(
    r"\b(?:" + "|".join(re.escape(name.upper()).replace(r"\ ", r"\s+")
                        for name in sorted(SECTION_ALIASES, key=len, reverse=True)) + r")[ \t]*:"
)
# Open-i's de-identification placeholder: upper-case X runs not touching other letters ("XXXX", "x-XXXX").
_OPENI_PLACEHOLDER = re.compile(r"(?<![A-Za-z])X{2,}(?![A-Za-z])")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class SectionHeader:
    """One header found in a report: canonical name, header as written, character offsets."""

    name: str
    label: str
    start: int  # offset of the header's first character
    content_start: int  # offset just after the header (and its colon)
    content_end: int  # offset where the next header (or the text) starts


def normalise_header(label: str) -> str:
    """Lower-case header text with ``/``, ``&`` as ``and``, ``(s)`` as ``s``, single spaces."""
    text = label.lower().replace("(s)", "s").replace("/", " and ").replace("&", " and ")
    text = re.sub(r"[^a-z ]", " ", text)
    return " ".join(text.split())


def canonical_section(label: str) -> str | None:
    """Canonical name of a header, or None if it is not a header (see the module docstring)."""
    key = normalise_header(label)
    if key in SECTION_ALIASES:
        return SECTION_ALIASES[key]
    letters = re.sub(r"[^A-Za-z]", "", label)
    if len(letters) >= 3 and label == label.upper() and len(key.split()) <= 5:
        return key.replace(" ", "_")
    return None


def find_headers(text: str) -> list[SectionHeader]:
    """All section headers of a report in order, with character offsets into ``text``."""
    found: list[tuple[int, int, str, str]] = []
    for match in _HEADER.finditer(text):
        name = canonical_section(match.group("label"))
        if name is not None:
            found.append((match.start(), match.end(), name, match.group("label").strip()))
    for match in _BARE_HEADER.finditer(text):
        key = normalise_header(match.group("label"))
        if key in SECTION_ALIASES and not any(s <= match.start() < e for s, e, _, _ in found):
            found.append((match.start(), match.end(), SECTION_ALIASES[key], match.group("label").strip()))
    found.sort()
    headers = []
    for i, (start, content_start, name, label) in enumerate(found):
        content_end = found[i + 1][0] if i + 1 < len(found) else len(text)
        paragraph_end = _first_paragraph_end(text, content_start, content_end) if name in ONE_PARAGRAPH_SECTIONS else None
        if paragraph_end is None:
            headers.append(SectionHeader(name, label, start, content_start, content_end))
        else:  # text after a one-paragraph section's paragraph, before the next header
            headers.append(SectionHeader(name, label, start, content_start, paragraph_end))
            headers.append(SectionHeader("body", "", paragraph_end, paragraph_end, content_end))
    return headers


def _first_paragraph_end(text: str, start: int, end: int) -> int | None:
    """Where the first paragraph of ``text[start:end]`` ends, if more non-blank text follows it."""
    first = len(text[start:end]) - len(text[start:end].lstrip())  # skip blank lines after the header
    gap = _PARAGRAPH_BREAK.search(text, start + first, end)
    if gap is None or not text[gap.end() : end].strip():
        return None
    return gap.start()


def _squash(text: str) -> str:
    """Whitespace runs (newlines included) as single spaces, stripped."""
    return " ".join(text.split())


def last_paragraph_span(text: str) -> tuple[int, int] | None:
    """Character offsets of the last non-empty paragraph without its leading/trailing headers, or None.

    None also when the paragraph holds nothing but headers ("COMPARISON: FINDINGS: IMPRESSION:").
    """
    starts = [0] + [m.end() for m in _PARAGRAPH_BREAK.finditer(text)]
    ends = [m.start() for m in _PARAGRAPH_BREAK.finditer(text)] + [len(text)]
    for start, end in reversed(list(zip(starts, ends, strict=True))):
        marker = _FINAL_REPORT.search(text, start, end)
        if marker and not text[start : marker.start()].strip():
            start = marker.end()  # skip the FINAL REPORT line
        if not text[start:end].strip():
            continue
        start, end = _trim_headers(text, start, end)
        return (start, end) if text[start:end].strip() else None
    return None


def _trim_headers(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without the section headers (and white space) that open or close it."""
    paragraph = text[start:end]
    headers = {(start + h.start, start + h.content_start) for h in find_headers(paragraph)}
    headers |= {(m.start(), m.end()) for m in _INLINE_HEADER.finditer(text, start, end)}
    changed = True
    while changed and start < end:
        changed = False
        start += len(text[start:end]) - len(text[start:end].lstrip())
        end -= len(text[start:end]) - len(text[start:end].rstrip())
        for header_start, header_end in headers:
            if header_start == start and header_end <= end:
                start, changed = header_end, True
            elif header_end == end and header_start >= start:
                end, changed = header_start, True
    return start, end


def last_paragraph(text: str) -> str:
    """The last non-empty paragraph of a report, without a leading header."""
    span = last_paragraph_span(text)
    return _squash(text[span[0] : span[1]]) if span else ""


def extract_sections(text: str) -> dict[str, str]:
    """Sections of one report as {canonical name: text}; only non-empty sections are kept.

    Repeated sections are joined with a space; whitespace is collapsed. See the module
    docstring for the header mapping, ``preamble`` and the ``last_paragraph`` fallback.
    """
    headers = find_headers(text)
    parts: dict[str, list[str]] = {}
    preamble_end = headers[0].start if headers else len(text)
    preamble = _squash(_FINAL_REPORT.sub("", text[:preamble_end]))
    if preamble:
        parts["preamble"] = [preamble]
    for header in headers:
        content = _squash(text[header.content_start : header.content_end])
        if not content:
            continue
        parts.setdefault(header.name, []).append(content)
        if header.name in INDICATION_SOURCES and header.name != "indication":
            parts.setdefault("indication", []).append(content)
    sections = {name: " ".join(chunks) for name, chunks in parts.items()}
    if "findings" not in sections and "impression" not in sections:
        fallback = last_paragraph(text)
        if fallback:
            sections["last_paragraph"] = fallback
    return sections


def clean_text(text: str) -> str:
    """The paper's cleaning: lower-case, ``___`` / ``XXXX`` and punctuation/special characters removed.

    De-identification placeholders go first: MIMIC's ``___`` and Open-i's ``XXXX`` (upper-case runs of
    two or more X not touching other letters, so ``x-XXXX`` -> ``x``; a lower-case ``xxx`` stays).

    Apostrophes are dropped (``patient's`` -> ``patients``); every other non-alphanumeric
    character becomes a space (``s/p`` -> ``s p``, ``left-sided`` -> ``left sided``), then
    whitespace is collapsed. Digits are kept.
    """
    text = _OPENI_PLACEHOLDER.sub(" ", text)  # before lower-casing: only upper-case runs are placeholders
    text = text.lower()
    text = re.sub(r"_{2,}", " ", text)  # de-identification placeholders
    text = re.sub(r"['\u2019]", "", text)
    text = re.sub(r"[^a-z0-9\s]", " ", text)
    return " ".join(text.split())


def text_column(setting: str) -> str:
    """The cohort column holding the cleaned text of a text setting: ``text_<setting>``."""
    if setting not in TEXT_SETTINGS:
        raise ValueError(f"text setting must be one of {TEXT_SETTINGS}, got {setting!r}")
    return f"text_{setting}"


def text_for_setting(sections: dict[str, str], setting: str, clean: bool = True) -> str:
    """The text a model reads under a text setting, cleaned unless ``clean=False``.

    - ``findings_impression`` (the paper): findings + impression, else the last paragraph.
    - ``indication``: only why the study was ordered (indication/history/reason): written before the
      image is read, yet on real reports it often names the suspected finding.
    Returns "" when the report has no such text.
    """
    if setting == "findings_impression":
        chunks = [sections[name] for name in ("findings", "impression") if sections.get(name)]
        if len(chunks) == 2 and chunks[0] == chunks[1]:
            chunks = chunks[:1]
        if not chunks and sections.get("last_paragraph"):
            chunks = [sections["last_paragraph"]]
    elif setting == "indication":
        chunks = [sections["indication"]] if sections.get("indication") else []
    else:
        raise ValueError(f"text setting must be one of {TEXT_SETTINGS}, got {setting!r}")
    joined = " ".join(chunks)
    return clean_text(joined) if clean else joined
