"""Finding the mentions in a text and classifying each one (the CheXpert labeler's extract + classify).

``find_mentions`` runs every label's compiled phrase list over the prepared text, keeps the
longest phrase where phrases overlap, resolves the generic heart / mediastinum phrases through
their size words and the weak phrases through "normal", and classifies each mention with
``rules.classify``. Offsets are those of the text given (``text.prepare`` keeps them).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from cxr_helpers.labeler.rules import Cue, Scopes, analyse, classify, clause_bounds, forward_limit
from cxr_helpers.labeler.text import prepare
from cxr_helpers.labeler.vocabulary import (
    ALSO_UNCERTAIN,
    MENTIONS,
    NORMAL_WORDS,
    OTHER_FINDING,
    OTHER_FINDINGS,
    QUALIFIED_MENTIONS,
    SIZE_WORDS,
    WEAK_MENTIONS,
)
from cxr_helpers.labels import NEGATIVE, POSITIVE, UNCERTAIN

FINDING, WEAK, QUALIFIED = "finding", "weak", "qualified"
_SEARCH_CHARS = 100  # how far after a generic phrase its size word may be
_PRECEDING_CHARS = 40  # how far before it ("normal heart size", "enlargement of the cardiac silhouette")


def _alternation(patterns: tuple[str, ...]) -> str:
    """One regular expression matching any of ``patterns`` as whole words."""
    return r"\b(?:" + "|".join(patterns) + r")\b"


def _size_pattern(words: dict[int, tuple[str, ...]]) -> str:
    """Named groups ``pos``, ``neg``, ``unc`` for the size words of one label."""
    groups = {"pos": words[POSITIVE], "neg": words[NEGATIVE], "unc": words[UNCERTAIN]}
    return "|".join(f"(?P<{name}>{_alternation(patterns)})" for name, patterns in groups.items())


# (label, kind, compiled pattern), in a fixed order so results are deterministic.
PHRASES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    *((label, FINDING, re.compile(_alternation(patterns))) for label, patterns in MENTIONS.items()),
    *((label, WEAK, re.compile(_alternation(patterns))) for label, patterns in WEAK_MENTIONS.items()),
    *(
        (label, QUALIFIED, re.compile(_alternation(patterns)))
        for label, patterns in QUALIFIED_MENTIONS.items()
    ),
    (OTHER_FINDING, FINDING, re.compile(_alternation(OTHER_FINDINGS))),
)
SIZE_AFTER = {label: re.compile(_size_pattern(words)) for label, words in SIZE_WORDS.items()}
SIZE_BEFORE = {  # a size word right before the phrase, optionally "-sized" / "of the"
    label: re.compile(r"(?:" + _size_pattern(words) + r")(?:\s*-?\s*sized?)?\s*(?:of\s+(?:the\s+)?)?$")
    for label, words in SIZE_WORDS.items()
}
NORMAL_AFTER = re.compile(_alternation(NORMAL_WORDS))
ALSO_UNCERTAIN_AFTER = {
    label: (re.compile(pattern), other) for label, (pattern, other) in ALSO_UNCERTAIN.items()
}
# A predicate already said about a generic phrase: its size word cannot come after the next comma.
_PREDICATE = re.compile(
    r"\b(?:is|are|was|were|appears?|appeared|remains?|remained|seems?|looks?|has|have|stable"
    r"|unchanged|similar|seen|noted|present|obscured)\b"
)
_CODES = {"pos": POSITIVE, "neg": NEGATIVE, "unc": UNCERTAIN}


@dataclass(frozen=True)
class Found:
    """A classified mention: label, phrase offsets, code, and the cue or size word behind the code."""

    label: str
    start: int
    end: int
    code: int
    cue: str


def find_mentions(text: str, prepared: str | None = None) -> list[Found]:
    """All mentions in ``text`` with their codes, in text order (see the module docstring)."""
    prepared = prepare(text) if prepared is None else prepared
    candidates = _longest(
        [
            (m.start(), m.end(), label, kind)
            for label, kind, pattern in PHRASES
            for m in pattern.finditer(prepared)
        ]
    )
    if not candidates:
        return []
    scopes = analyse(prepared)
    taken = [(start, end) for start, end, _, kind in candidates if kind != QUALIFIED]
    found = []
    for start, end, label, kind in candidates:
        mention = _classify_candidate(prepared, scopes, start, end, label, kind, taken)
        if mention is None:
            continue
        found.append(mention)
        also = ALSO_UNCERTAIN_AFTER.get(label)
        if also and mention.code != NEGATIVE and also[0].fullmatch(prepared, start, end):
            found.append(Found(also[1], start, end, UNCERTAIN, prepared[start:end]))
    return found


def _longest(candidates: list[tuple[int, int, str, str]]) -> list[tuple[int, int, str, str]]:
    """Drop phrases lying inside a longer one; keep equal spans of different labels (hydropneumothorax)."""
    candidates.sort(key=lambda c: (c[0], c[0] - c[1], c[2]))
    kept: list[tuple[int, int, str, str]] = []
    reach_start, reach_end = -1, -1  # the longest span kept so far that may still contain the next ones
    for start, end, label, kind in candidates:
        if start >= reach_start and end <= reach_end and (start, end) != (reach_start, reach_end):
            continue
        if kept and (start, end, label) == kept[-1][:3]:
            continue
        kept.append((start, end, label, kind))
        if end > reach_end:
            reach_start, reach_end = start, end
    return kept


def _classify_candidate(
    prepared: str, scopes: Scopes, start: int, end: int, label: str, kind: str, taken: list[tuple[int, int]]
) -> Found | None:
    """One candidate phrase as a classified mention, or None (a generic phrase without a size word)."""
    if kind == FINDING:
        code, cue = classify(scopes, start, end)
        return Found(label, start, end, code, _cue_text(prepared, cue))
    if kind == WEAK:
        normal = NORMAL_AFTER.search(prepared, end, _size_search_end(prepared, scopes, end))
        if normal:
            return Found(label, start, end, NEGATIVE, normal.group())
        code, cue = classify(scopes, start, end)
        return Found(
            label,
            start,
            end,
            UNCERTAIN if code == POSITIVE else code,
            _cue_text(prepared, cue) or "weak mention",
        )
    size = _size_word(prepared, scopes, start, end, label, taken)
    if size is None:
        return None
    size_code, size_start, size_end, word = size
    if size_code == NEGATIVE:
        return Found(label, start, end, NEGATIVE, word)
    code, cue = classify(scopes, min(start, size_start), max(end, size_end))
    if code == POSITIVE:
        return Found(label, start, end, size_code, word)
    return Found(label, start, end, code, _cue_text(prepared, cue))


def _size_word(
    prepared: str, scopes: Scopes, start: int, end: int, label: str, taken: list[tuple[int, int]]
) -> tuple[int, int, int, str] | None:
    """The size word qualifying a generic phrase: (code, start, end, word), looked for before, then after it.

    A size word inside another mention ("left atrial enlargement") belongs to that mention, not to this one.
    """
    clause_start, _ = clause_bounds(scopes, start, end)
    before_from = max(clause_start, start - _PRECEDING_CHARS)
    before = SIZE_BEFORE[label].search(prepared, before_from, start)
    if before:
        name = before.lastgroup
        return _CODES[name], before.start(name), before.end(name), before.group(name)
    for after in SIZE_AFTER[label].finditer(prepared, end, _size_search_end(prepared, scopes, end)):
        if not any(
            begin <= after.start() < finish and (begin, finish) != after.span() for begin, finish in taken
        ):
            name = after.lastgroup
            return _CODES[name], after.start(name), after.end(name), after.group(name)
    return None


def _size_search_end(prepared: str, scopes: Scopes, end: int) -> int:
    """Where a phrase's size word may still come: up to the statement's end, or a comma after a predicate."""
    limit = min(forward_limit(scopes, end), end + _SEARCH_CHARS)
    position = end
    for comma in scopes.commas[bisect_left(scopes.commas, end) :]:
        if comma >= limit:
            break
        if _PREDICATE.search(prepared, position, comma):
            return comma
        position = comma
    return limit


def _cue_text(prepared: str, cue: Cue | None) -> str:
    """The cue's words ("" for none)."""
    return "" if cue is None else prepared[cue.start : cue.end]
