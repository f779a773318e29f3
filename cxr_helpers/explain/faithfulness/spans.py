"""Which words of the cleaned text a model read state a finding: the phantom's character spans, aligned."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from cxr_helpers.reports import find_headers

TEXT_SECTIONS = {"findings_impression": ("findings", "impression", "last_paragraph"),
                 "indication": ("indication", "history")}
NEGATION_CUES = frozenset({"no", "not", "without", "negative", "free", "absent"})
_RAW_WORD = re.compile(r"[A-Za-z0-9'\u2019]+")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n\s*\n")  # a full stop, not a decimal point, or a blank line
_SENTENCE_START = re.compile(r"\.(?=\s)|:|\n\s*\n")  # what ends the sentence before, or a header's colon
OWN_WORD_MIN_SENTENCES = 5  # a word seen in fewer sentences is not evidence of anything


def cleaned_word_offsets(report: str, cleaned_text: str, start_at: int = 0) -> list[tuple[int, int]] | None:
    """Raw-report character offsets of each word of the cleaned text (``reports.clean_text``), or None.

    The cleaned findings+impression text is the report's words from the FINDINGS header on, with
    headers and other sections left out; the words are matched in order (a greedy alignment).
    """
    raw = [(m.start(), m.end(), _word(m)) for m in _RAW_WORD.finditer(report)]
    raw = [w for w in raw if w[0] >= start_at]
    words = cleaned_text.split()
    offsets, j = [], 0
    for word in words:
        while j < len(raw) and raw[j][2] != word:
            j += 1
        if j == len(raw):
            return None
        offsets.append((raw[j][0], raw[j][1]))
        j += 1
    return offsets


def _text_start(report: str, sections: Sequence[str]) -> int:
    """Where the first section a text setting reads begins in the raw report (0 if no header found)."""
    starts = [h.content_start for h in find_headers(report) if h.name in sections]
    return min(starts) if starts else 0


def _sentence_start(report: str, position: int) -> int:
    """Start of the sentence (or clause after a header colon) holding ``position``."""
    cuts = [found.end() for found in _SENTENCE_START.finditer(report, 0, position)]
    return cuts[-1] if cuts else 0


def _sentence_end(report: str, position: int) -> int:
    """End of the sentence holding ``position``: the next full stop (not a decimal point) or paragraph break."""
    found = _SENTENCE_END.search(report, position)
    return found.start() if found else len(report)


def sentence_spans(report: str, spans: Sequence[dict]) -> list[dict]:
    """The same spans, each widened to the sentence that holds it ("plate-like [[atelectasis]] at the left base")."""
    return [dict(span, start=_sentence_start(report, span["start"]), end=_sentence_end(report, span["end"]))
            for span in spans]


def span_word_indices(report: str, cleaned_text: str, spans: Sequence[dict], label: str, codes: Sequence[int] = (1,),
                      sections: Sequence[str] = TEXT_SECTIONS["findings_impression"],
                      with_negation_cue: bool = False) -> set[int] | None:
    """Indices of the cleaned text's words that state ``label`` (spans with one of ``codes``).

    ``with_negation_cue`` adds the negation words ("no", "without", ...) that precede a span in
    its sentence, so "there is no [[pneumothorax]]" gives {no, pneumothorax}; other findings
    named in the same list ("no consolidation or pneumothorax") stay out. None if the cleaned text
    cannot be aligned with the report.
    """
    offsets = cleaned_word_offsets(report, cleaned_text, _text_start(report, sections))
    if offsets is None:
        return None
    words = cleaned_text.split()
    chosen = set()
    for span in spans:
        if span["label"] != label or int(span["code"]) not in codes or span.get("section") not in sections:
            continue
        chosen |= {i for i, (a, b) in enumerate(offsets) if a < span["end"] and b > span["start"]}
        if with_negation_cue:
            start = _sentence_start(report, span["start"])
            chosen |= {i for i, (a, b) in enumerate(offsets)
                       if start <= a < span["start"] and words[i] in NEGATION_CUES}
    return chosen


def _word(match: re.Match) -> str:
    """A raw word as the cleaned text writes it: lower case, apostrophes dropped."""
    return re.sub(r"['\u2019]", "", match.group().lower())


def finding_words(reports: Iterable[tuple[str, Sequence[dict]]],
                  sections: Sequence[str] = TEXT_SECTIONS["findings_impression"],
                  min_sentences: int = OWN_WORD_MIN_SENTENCES) -> dict[str, frozenset[str]]:
    """Each finding's own words: words that, in these (report, spans) pairs, appear only in sentences stating it.

    On the phantom "plate" (of "plate-like") comes only in sentences stating atelectasis and
    "patchy" only with an opacity, so a model that reads them reads the finding, although they
    lie outside its span (the head noun). A word counts if it is in at least ``min_sentences``
    sentences of the text read (from the first of ``sections`` on) and every one of them states
    the finding as present or possible (span code 1 or -1); side, size and severity words,
    shared between findings, and the words of negated findings never count.
    """
    seen: dict[str, int] = {}
    always: dict[str, set[str]] = {}
    for report, spans in reports:
        start = _text_start(report, sections)
        cuts = [start] + [m.end() for m in _SENTENCE_START.finditer(report, start)] + [len(report)]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):  # one sentence
            labels = {s["label"] for s in spans if int(s["code"]) in (1, -1) and a <= s["start"] < b}
            for word in {_word(m) for m in _RAW_WORD.finditer(report, a, b)}:
                seen[word] = seen.get(word, 0) + 1
                always[word] = always[word] & labels if word in always else set(labels)
    own: dict[str, set[str]] = {}
    for word, labels in always.items():
        for label in labels if seen[word] >= min_sentences else ():
            own.setdefault(label, set()).add(word)
    return {label: frozenset(words) for label, words in sorted(own.items())}
