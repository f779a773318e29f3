"""Negation and uncertainty: is a mention stated as present (1), absent (0) or hedged (-1)?

The rules follow the CheXpert labeler's rule files (Irvin et al., AAAI 2019: its
``patterns/pre_negation_uncertainty.txt``, ``negation.txt`` and ``post_negation_uncertainty.txt``,
written on NegBio's, Peng et al., AMIA 2018), with word patterns instead of a dependency parse.
The words are our own; docs/labeler.md lists where they follow CheXpert and the few places they
do not, and why.

1. An exclusion hedge ("cannot exclude", "... cannot be excluded", "not ruled out") makes a
   mention uncertain: it is checked first because it contains a negation word.
2. A negation cue makes it negative: before the mention ("no", "without", "negative for", "free
   of", "resolution of", "removal of", "history of", "rule out") up to the end of the clause,
   across a list's commas and "or" ("no consolidation, effusion, or pneumothorax"); or after it
   within its comma-free stretch ("... is not seen", "... has resolved", "... has been removed").
3. An uncertainty cue makes it uncertain: before it ("possible", "probable", "concerning for",
   "suspicious for", "suggestion of", "secondary to", "differential diagnosis includes"), reaching
   over a list as a negation does; after it ("... is suspected", "... is less likely", "... is
   not well visualized"); or on either side within the mention's comma-free stretch ("may",
   "could", "?"). Alternatives are uncertain: "X versus Y", "X or Y", "X/Y" (the words right
   beside the conjunction). As in CheXpert, "likely", "probably", "consistent with", "compatible
   with" and "suggestive of" are not hedges ("most likely atelectasis" is positive); "X may / likely /
   probably represent(s) Y" hedges Y (the phantom codes "likely reflect" as uncertain).
4. Anything else is positive. "Stable", "unchanged", "again seen", "persistent" are not cues, so
   "stable cardiomegaly" stays positive; "no change" and "without interval change" are not negations.

A clause ends at a sentence end, ``;``, ``:`` and at "but", "however", "although", "which",
"except" ... (``text.clause_breaks``); a list negation also stops where a new statement starts
(``text.negation_stops``: ", small left effusion", "and there is", "with").
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from cxr_helpers.labeler.text import clause_breaks, commas, negation_stops
from cxr_helpers.labels import NEGATIVE, POSITIVE, UNCERTAIN

# "no", "without" unless they only say nothing changed ("no change", "without interval change").
_NOTHING_CHANGED = (
    r"(?!\s+(?:(?:significant|interval|appreciable|substantial|major|marked|definite|apparent|acute|other|further|"
    r"radiographic|gross|visible)\s+){0,3}(?:change|changes|increase|progression|longer|worsening|improvement|"
    r"difference|evidence\s+of\s+change)\b)"
)
# "not resolved", "partially resolved", "not yet removed": the finding is still there.
_NOT_FULLY = (
    r"(?<!not\s)(?<!yet\s)(?<!partially\s)(?<!incompletely\s)(?<!nearly\s)(?<!almost\s)(?<!largely\s)"
)
PRE_NEGATION = re.compile(
    r"\bno\b"
    + _NOTHING_CHANGED
    + r"|\bwithout\b"
    + _NOTHING_CHANGED
    + r"|\bnegative\s+for\b|\bfree\s+of\b|\bclear\s+of\b|\babsence\s+of\b|\babsent\b|"
    + _NOT_FULLY
    + r"resolved\b"
    r"|\b(?:resolution|removal|clearing|withdrawal|disappearance|interval\s+removal|drainage|history)\s+of\b"
    r"|\b(?:do|does|did)\s+not\s+(?:see|identify|demonstrate|show)\b"
    r"|\bthere\s+(?:is|are|was|were)\s+not\b|\bnor\b|\bneither\b"
    r"|\b(?:to\s+)?rule\s+out\b|\br/o\b|\bto\s+exclude\b"
)
POST_NEGATION = re.compile(
    r"\b(?:(?:is|are|was|were|has\s+been|have\s+been)\s+)?not\s+(?:(?:(?!clearly\b)\w+ly|been|be)\s+)?"
    r"(?:seen|identified|visible|present|evident|demonstrated|detected|noted|observed|enlarged|widened|dilated"
    r"|apparent|shown|increased|enlarging|large|prominent|found)\b"
    r"|\bno\s+longer\s+(?:(?:\w+ly|be)\s+)?(?:seen|visualized|visible|present|evident|identified|appreciated"
    r"|demonstrated|noted|apparent|enlarged)\b"
    r"|\b(?:(?:has|have|had)\s+)?(?:since\s+)?(?:\w+ly\s+)?"
    + _NOT_FULLY
    + r"(?:resolved|cleared|disappeared)\b"
    r"|\b(?:has|have|had|was|were)\s+(?:since\s+)?(?:been\s+)?(?:removed|withdrawn|discontinued)\b"
    r"|" + _NOT_FULLY + r"(?<!not\sbeen\s)\bremoved\b"
    r"|\babsent\b|\bunlikely\b"
    r"|\b(?:is|are|was|were|has\s+been|have\s+been)\s+(?:ruled\s+out|excluded)\b"
)
EXCLUSION_HEDGE = re.compile(
    r"\b(?:cannot|can\s*not|can't|could\s+not|couldn't|unable\s+to|difficult\s+to|not\s+possible\s+to)\s+"
    r"(?:be\s+)?(?:entirely\s+|completely\s+|definitely\s+|totally\s+|fully\s+|reliably\s+)?"
    r"(?:exclude[ds]?|excluding|rule[ds]?\s+out|ruled\s+out)\b"
    r"|\bnot\s+(?:be\s+)?(?:entirely\s+|completely\s+|definitely\s+|totally\s+|fully\s+)?(?:excluded|ruled\s+out)\b"
)
# "X may represent Y": X is what is seen, Y the hedged reading of it (so the hedge only reaches forward).
_INTERPRETS = (
    r"(?:represent|reflect|indicate|signify|correspond\s+to|relate\s+to"
    r"|be\s+related\s+to|be\s+secondary\s+to)\b"
)
# A hedging word right before the finding ("possible pneumonia"): it reaches the mention's
# comma-free stretch only (CheXpert's "possible", "probable", ... modify one noun).
PRE_UNCERTAINTY = re.compile(
    r"\b(?:possible|possibly|probable|questionable|questionably|presumed|presumably|presumptive|suspected"
    r"|equivocal|perhaps|potential|potentially|less\s+likely|alternatively)\b"
)
# A hedge that takes its findings as an object ("concerning for", "differential diagnosis includes",
# "may represent"): it reaches every item of a list, as a negation does (in CheXpert's parse the
# items joined to the first one inherit the edge from the hedge).
LIST_UNCERTAINTY = re.compile(
    r"\b(?:suspect|suspicious|suspicion|concern|concerning|worrisome|suggestions?\s+of|question\s+of"
    r"|differential\s+(?:diagnosis\s+)?(?:includes?|considerations?|would\s+include)"
    r"|(?:evaluate|eval|assess|evaluation|assessment)\s+(?:for|of)|consider|considered|thought\s+to\s+represent"
    r"|secondary\s+to)\b"
    r"|\b(?:may|might|could|can)\s+(?:also\s+)?"
    + _INTERPRETS
    + r"|\b(?:likely|probably|possibly|presumably)\s+(?:represent|reflect|indicat|relat)\w*"
)
# "X is likely" hedges X, but in "X is most likely Y" X is what is seen and Y the hedged reading:
# a copula hedge reaches back only when the statement ends there or goes on with a place or a cause.
_HEDGE_ENDS = (
    r"(?=\s*(?:[.,;:)]|$)|\s+(?:present|seen|noted|identified|given|due|related|secondary|in|at|on|within|along"
    r"|and|but|although|though|however|if|as|to|from|with|for|by|particularly|especially|clinically)\b)"
)
POST_UNCERTAINTY = re.compile(
    r"\b(?:is|are|was|were|appears?|seems?|remains?)\s+(?:(?:also|felt|thought)\s+)?"
    r"(?:less\s+likely|probable|possible|possibly|suspected|questionable|questioned|favou?red|considered"
    r"|(?:a|another)\s+(?:consideration|concern|possibility)|not\s+certain|uncertain|equivocal|indeterminate)\b"
    + _HEDGE_ENDS
    + r"|\b(?:possibly|suspected|questioned|questionable)\s*(?=[.;,]|$)"
    # "X is not well visualized", "X is not clearly seen", "X was not appreciated", "X is poorly evaluated"
    r"|\bnot\s+(?:(?:been|be)\s+)?(?:(?:well|clearly|definitely|adequately)\s+)?(?:visualized|appreciated|evaluated)\b"
    r"|\bnot\s+(?:(?:been|be)\s+)?(?:well|clearly)\s+(?:seen|demonstrated|delineated|defined)\b"
    r"|\b(?:poorly|incompletely|suboptimally)\s+(?:evaluated|visualized|assessed)\b"
)
EITHER_SIDE_UNCERTAINTY = re.compile(
    r"\b(?:may|might|could)\b(?!\s+(?:also\s+)?" + _INTERPRETS + r")|\bdifferential\b|\?"
    r"|\bin\s+the\s+(?:appropriate|correct|proper|right)\s+clinical\s+(?:setting|context|scenario)\b"
)
# "atelectasis versus pneumonia", "scarring or atelectasis", "opacities/atelectasis": the alternatives
# are uncertain (CheXpert's "XXX versus YYY" and "XXX or YYY" rules; its loader reads "X/Y" and
# "and/or" as "or"), but only the words right beside the conjunction. A negated list ("no effusion
# or pneumothorax") is negative before this is looked at.
ALTERNATIVES = re.compile(r"\b(?:versus|vs|or)\b|(?<=[a-z]{2})/(?=[a-z]{2})")
_ALTERNATIVE_GAP = 2  # at most this many words between the conjunction and an alternative it hedges
# "No significant change in the pneumothorax or pleural fluid": the "or" lists what did not change,
# it offers no alternatives.
_UNCHANGED_LIST = re.compile(
    r"\b(?:no|without)\s+(?:(?:significant|interval|appreciable|substantial|major|marked|definite|apparent"
    r"|other|further|radiographic|gross|visible)\s+){0,3}(?:change|changes|difference)\s+(?:in|of)\b[^.;:]*"
)
# "small or moderate effusion", "right or left", "one or two nodules": the alternatives are the
# finding's size, side or number, not the finding itself (CheXpert's parse joins the two modifiers).
_MODIFIER_BEFORE = re.compile(
    r"\b(?:small|moderate|mild|minimal|trace|tiny|large|severe|marked|right|left|bilateral|unilateral|upper|lower"
    r"|middle|mid|anterior|posterior|lateral|medial|apical|basilar|one|two|three|four|single|few|several|multiple"
    r"|acute|chronic|early|new|old|focal|diffuse|partial|complete|\d+(?:\.\d+)?(?:st|nd|rd|th|cm|mm)?)\s*$"
)
_MODIFIER_REACH = 16  # characters before the conjunction searched for the modifier
# Cue kinds, in the order they are checked.
EXCLUSION, PRE_NEG, POST_NEG, PRE_UNC, LIST_UNC, POST_UNC, EITHER_UNC, ALTERNATIVE = (
    "exclusion",
    "pre_neg",
    "post_neg",
    "pre_unc",
    "list_unc",
    "post_unc",
    "either_unc",
    "alternative",
)
_CUE_PATTERNS = (
    (EXCLUSION, EXCLUSION_HEDGE),
    (PRE_NEG, PRE_NEGATION),
    (POST_NEG, POST_NEGATION),
    (PRE_UNC, PRE_UNCERTAINTY),
    (LIST_UNC, LIST_UNCERTAINTY),
    (POST_UNC, POST_UNCERTAINTY),
    (EITHER_UNC, EITHER_SIDE_UNCERTAINTY),
    (ALTERNATIVE, ALTERNATIVES),
)


@dataclass(frozen=True)
class Cue:
    """A negation or uncertainty word found in the text: offsets and kind."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class Scopes:
    """One prepared text with its cues and boundaries, computed once and shared by all its mentions."""

    text: str
    breaks: list[int]
    stops: list[int]
    commas: list[int]
    cues: list[Cue]
    cue_starts: list[int]


def analyse(prepared: str) -> Scopes:
    """Cues and clause boundaries of a prepared (lower-cased, same-length) text."""
    cues = [
        Cue(m.start(), m.end(), kind) for kind, pattern in _CUE_PATTERNS for m in pattern.finditer(prepared)
    ]
    unchanged = [match.span() for match in _UNCHANGED_LIST.finditer(prepared)]
    cues = [cue for cue in cues if cue.kind != ALTERNATIVE or _offers_alternatives(prepared, cue, unchanged)]
    cues.sort(key=lambda cue: cue.start)
    return Scopes(
        prepared,
        clause_breaks(prepared),
        negation_stops(prepared),
        commas(prepared),
        cues,
        [cue.start for cue in cues],
    )


def _offers_alternatives(prepared: str, cue: Cue, unchanged: list[tuple[int, int]]) -> bool:
    """Whether an "or" / "versus" / "/" joins two readings, not two modifiers or two unchanged things."""
    if any(begin <= cue.start < end for begin, end in unchanged):
        return False
    return _MODIFIER_BEFORE.search(prepared, max(0, cue.start - _MODIFIER_REACH), cue.start) is None


def _before(positions: list[int], offset: int, floor: int) -> int:
    """The last position < offset (at least ``floor``)."""
    i = bisect_left(positions, offset)
    return max(positions[i - 1], floor) if i else floor


def _after(positions: list[int], offset: int, ceiling: int) -> int:
    """The first position >= offset (at most ``ceiling``)."""
    i = bisect_left(positions, offset)
    return min(positions[i], ceiling) if i < len(positions) else ceiling


def clause_bounds(scopes: Scopes, start: int, end: int) -> tuple[int, int]:
    """Start and end of the clause holding ``[start, end)``."""
    return _before(scopes.breaks, start, 0), _after(scopes.breaks, end, len(scopes.text))


def forward_limit(scopes: Scopes, end: int) -> int:
    """Where a statement about ``text[:end]`` stops: the clause end or a negation stop, whichever is first."""
    clause_end = _after(scopes.breaks, end, len(scopes.text))
    return _after(scopes.stops, end, clause_end)


def classify(scopes: Scopes, start: int, end: int) -> tuple[int, Cue | None]:
    """Code of the mention at ``[start, end)`` (1, 0 or -1) and the cue that decided it (None if positive)."""
    clause_start, clause_end = clause_bounds(scopes, start, end)
    negation_reach = _before(scopes.stops, start, clause_start)  # a pre-negation must come after this
    stretch_start = max(_before(scopes.commas, start, clause_start), negation_reach)
    stretch_end = min(_after(scopes.commas, end, clause_end), _after(scopes.stops, end, clause_end))
    first = bisect_left(scopes.cue_starts, negation_reach)  # no cue before this can reach the mention
    last = max(stretch_end, end)
    found: dict[str, Cue] = {}
    for cue in scopes.cues[first:]:
        if cue.start >= last:
            break
        if _applies(scopes.text, cue, start, end, negation_reach, stretch_start, stretch_end):
            found.setdefault(cue.kind, cue)
    for kinds, code in (
        ((EXCLUSION,), UNCERTAIN),
        ((PRE_NEG, POST_NEG), NEGATIVE),
        ((PRE_UNC, LIST_UNC, POST_UNC, EITHER_UNC, ALTERNATIVE), UNCERTAIN),
    ):
        for kind in kinds:
            if kind in found:
                return code, found[kind]
    return POSITIVE, None


def _applies(
    text: str, cue: Cue, start: int, end: int, negation_reach: int, stretch_start: int, stretch_end: int
) -> bool:
    """Whether ``cue`` reaches the mention ``[start, end)`` (see the module docstring)."""
    inside = start <= cue.start < end
    before = cue.end <= start
    after = end <= cue.start < stretch_end
    if cue.kind in (EXCLUSION, PRE_NEG):
        reaches_forward = before and cue.start >= negation_reach
        return inside or reaches_forward or (cue.kind == EXCLUSION and after)
    if cue.kind == POST_NEG:
        return inside or after
    if cue.kind == PRE_UNC:
        return inside or (before and cue.start >= stretch_start)
    if cue.kind == LIST_UNC:
        return inside or (before and cue.start >= negation_reach)
    if cue.kind == POST_UNC:
        return inside or after
    if cue.kind == ALTERNATIVE:
        gap = (
            text[end : cue.start]
            if after
            else text[cue.end : start]
            if before and cue.start >= stretch_start
            else None
        )
        return inside or (gap is not None and len(gap.split()) <= _ALTERNATIVE_GAP)
    return inside or after or (before and cue.start >= stretch_start)  # EITHER_UNC
