"""Report text as the labeler reads it: same length as the original, so every offset stays valid.

The labeler never edits a report's characters in a way that moves them: de-identification tokens
(MIMIC's ``___``, Open-i's ``XXXX``) become spaces of the same length and the text is lower-cased
character by character. A mention found at ``[start, end)`` in the prepared text is therefore the
same ``[start, end)`` in the report the user gave, which is what the evidence spans promise.

Sentence ends and clause breaks are returned as sorted offsets; the rules (``rules.py``) use them
to decide how far a negation or a hedge reaches.
"""

from __future__ import annotations

import re

# De-identification placeholders: runs of underscores (MIMIC) and upper-case X runs not touching
# other letters (Open-i writes "XXXX", also glued to punctuation or digits: "x-XXXX", "5XXXX").
DEIDENTIFICATION = re.compile(r"_{2,}|(?<![A-Za-z])X{2,}(?![A-Za-z])")

# A sentence ends at . ! ? followed by white space (or the end), or at a blank line.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n[ \t]*\n")
# Words after which a full stop is an abbreviation, not a sentence end ("pneumonia vs. atelectasis").
_ABBREVIATIONS = frozenset(
    {"vs", "dr", "e.g", "i.e", "eg", "ie", "approx", "etc", "cf", "mr", "mrs", "ms", "st"}
)
_WORD_BEFORE = re.compile(r"([a-z.]+)$")

# Clause breaks: a negation or a hedge does not reach across them (NegBio's and CheXpert's scope
# stops at these conjunctions; a new clause starts after them).
_CLAUSE_BREAK = re.compile(
    r"[;:]"
    r"|\b(?:but|however|although|though|whereas|except|yet|which|who|aside\s+from|apart\s+from"
    r"|other\s+than|with\s+the\s+exception\s+of)\b"
)
# Where a list negation ("no consolidation, effusion, or pneumothorax") stops before the clause
# ends: a comma or "and" that starts a new statement ("no pneumothorax, small left effusion",
# "no effusion and the heart is enlarged"), or "with" that adds a finding.
_NEGATION_STOP = re.compile(
    r",\s*(?:and\s+)?(?=(?:there|the|this|these|it|its|mild|mildly|moderate|moderately|severe|severely|marked"
    r"|markedly|small|minimal|trace|tiny|stable|persistent|persisting|unchanged|new|newly|increas\w*|decreas\w*"
    r"|improv\w*|worsen\w*|interval|again|redemonstrat\w*|residual|continued|slight|slightly|subtle"
    r"|probable|possible|likely|enlarged|[a-z]+\s+(?:is|are)"
    r")\b)"
    r"|\band\s+(?=(?:there|the)\b)"
    r"|\b(?<!compatible\s)(?<!consistent\s)(?<!associated\s)(?<!together\s)(?<!along\s)(?:with|given)\b"
)


def prepare(text: str) -> str:
    """Lower-cased copy of ``text`` with de-identification tokens blanked, of exactly the same length."""
    masked = DEIDENTIFICATION.sub(lambda match: " " * len(match.group()), text)
    lowered = masked.lower()
    if len(lowered) != len(masked):  # a few Unicode letters grow when lower-cased: keep those as they are
        lowered = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in masked)
    return lowered


def sentence_ends(prepared: str) -> list[int]:
    """Offsets where sentences end (the full stop itself, or a blank line), in order."""
    ends = []
    for match in _SENTENCE_END.finditer(prepared):
        if match.group() == "." and _is_abbreviation(prepared, match.start()):
            continue
        ends.append(match.start())
    return ends


def _is_abbreviation(prepared: str, dot: int) -> bool:
    """Whether the full stop at ``dot`` ends a known abbreviation ("vs.", "dr.", "e.g.")."""
    word = _WORD_BEFORE.search(prepared, max(0, dot - 8), dot)
    return word is not None and word.group(1).strip(".") in _ABBREVIATIONS


def clause_breaks(prepared: str) -> list[int]:
    """Sorted offsets that end a clause: sentence ends, ``;`` ``:`` and conjunctions such as "but"."""
    breaks = set(sentence_ends(prepared))
    breaks.update(match.start() for match in _CLAUSE_BREAK.finditer(prepared))
    return sorted(breaks)


def negation_stops(prepared: str) -> list[int]:
    """Sorted offsets where a list negation stops although the clause goes on (see ``_NEGATION_STOP``)."""
    return [match.start() for match in _NEGATION_STOP.finditer(prepared)]


def commas(prepared: str) -> list[int]:
    """Offsets of the commas: a hedge or a post-negation ("is not seen") stays within them."""
    return [i for i, ch in enumerate(prepared) if ch == ","]
