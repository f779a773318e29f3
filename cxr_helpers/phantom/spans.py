"""Report text that remembers where each finding is mentioned: sentences, wrapping, spans.

A template from the phrase banks is filled into a ``Sentence`` whose mentions are character
offsets; paragraphs are wrapped like MIMIC's text files (78 columns, one space of indent) while
an offset map keeps every mention's ``Span`` pointing at the right characters of the final text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cxr_helpers.phantom.phrases import SHORT_NAMES


@dataclass
class Span:
    """Characters [start, end) of the report text stating one finding, with its code and section."""

    label: str
    start: int
    end: int
    code: int
    section: str

    def as_dict(self) -> dict:
        """The span as written to report_spans.jsonl."""
        return {"label": self.label, "start": self.start, "end": self.end, "code": self.code,
                "section": self.section}


@dataclass
class Sentence:
    """A sentence and its finding mentions as (label, code, start, end) relative to the sentence."""

    text: str
    mentions: list[tuple[str, int, int, int]]


_MARKER = re.compile(r"\[\[(?:([A-Z]{3}):)?(.+?)\]\]")


def make_sentence(template: str, label: str, code: int, values: dict[str, str]) -> Sentence:
    """Fill a phrase-bank template and turn its ``[[...]]`` markers into mention offsets."""
    filled = template.format(**values)
    filled = re.sub(r"\s{2,}", " ", filled).strip()
    filled = filled[0].upper() + filled[1:]
    text, mentions, last = "", [], 0
    for match in _MARKER.finditer(filled):
        text += filled[last:match.start()]
        mention_label = SHORT_NAMES[match.group(1)] if match.group(1) else label
        mentions.append((mention_label, code, len(text), len(text) + len(match.group(2))))
        text += match.group(2)
        last = match.end()
    text += filled[last:]
    return Sentence(text, mentions)


def wrap_paragraph(text: str, width: int = 78, indent: str = " ") -> tuple[str, list[int]]:
    """Wrap at spaces like MIMIC's files (lines indented by one space); return text and an offset map.

    ``offsets[i]`` is where character ``i`` of ``text`` lands in the wrapped text (``len(text)``
    maps to the wrapped length), so spans survive the wrapping.
    """
    out = [indent]
    offsets: list[int] = []
    position, line_len = len(indent), len(indent)
    for match in re.finditer(r"(\s*)(\S+)", text):
        gap, word = match.group(1), match.group(2)
        if line_len > len(indent) and line_len + len(gap) + len(word) > width:
            piece = "\n" + indent
            offsets.extend([position] * len(gap))
            out.append(piece)
            position += len(piece)
            line_len = len(indent)
        else:
            offsets.extend(range(position, position + len(gap)))
            out.append(gap)
            position += len(gap)
            line_len += len(gap)
        offsets.extend(range(position, position + len(word)))
        out.append(word)
        position += len(word)
        line_len += len(word)
    offsets.extend([position] * (len(text) + 1 - len(offsets)))  # trailing spaces, then the end
    return "".join(out), offsets


class ReportBuilder:
    """Accumulates report text and the absolute spans of its finding mentions."""

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[Span] = []

    def line(self, text: str = "") -> None:
        """Append one raw line (MIMIC's blank lines hold a single space)."""
        self.text += (text if text else " ") + "\n"

    def paragraph(self, sentences: list[Sentence], section: str, header: str = "",
                  separator: str = "  ") -> None:
        """Append a wrapped paragraph, optionally opened inline by a header like "IMPRESSION:  "."""
        raw, mentions = header, []
        for i, sentence in enumerate(sentences):
            if i:
                raw += separator
            mentions += [(lab, code, len(raw) + s, len(raw) + e) for lab, code, s, e in sentence.mentions]
            raw += sentence.text
        wrapped, offsets = wrap_paragraph(raw)
        base = len(self.text)
        for label, code, start, end in mentions:
            self.spans.append(Span(label, base + offsets[start], base + offsets[end - 1] + 1, code, section))
        self.text += wrapped + "\n"

