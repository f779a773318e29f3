"""The record both Open-i readers produce (one report and its image ids), skips, and the id rules.

Ids: the NLM files name a report ``CXR<n>`` (Kaggle's ``uid`` is the same ``n``) and an image
``CXR<n>_IM-<series>-<image>``, sometimes ``CXR<n>_1_IM-...``; Kaggle names the same image
``<n>_IM-<series>-<image>.dcm.png``. ``image_key`` gives what both share, so a projections CSV
from Kaggle matches NLM's images. In the MIMIC layout each report becomes one subject and one
study with ids derived from ``n`` (subject ``10000000 + n``, study ``50000000 + n``), and each
image's ``dicom_id`` is its NLM id (Kaggle form: ``CXR`` + its file name without ``.dcm.png``),
so every file of the layout maps back to the download by eye; ``openi-ids.csv`` lists them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

LICENCE = "CC BY-NC-ND 4.0 (Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International)"
CITATION = (
    "Demner-Fushman D, et al. Preparing a collection of radiology examinations for distribution "
    "and retrieval. J Am Med Inform Assoc. 2016;23(2):304-310."
)
SOURCE = "Open-i Indiana University chest X-ray collection (National Library of Medicine)"
SECTION_NAMES = ("indication", "comparison", "findings", "impression")
SUBJECT_BASE, STUDY_BASE = 10_000_000, 50_000_000
MAX_UID = 9_999_999  # keeps subject ids at 8 digits starting 1x and study ids at 5x
_UID = re.compile(r"^\s*(?:CXR)?0*(\d+)\s*$", re.IGNORECASE)
_IMAGE_SUFFIXES = re.compile(r"(\.dcm)?\.png$", re.IGNORECASE)
_KEY = re.compile(r"^(\d+)_(?:\d+_)?(IM-.+)$", re.IGNORECASE)


class OpenIError(ValueError):
    """The download cannot be read or written as asked: the message names the file to check."""


@dataclass
class OpenIReport:
    """One report as read from either form: uid, sections, MeSH coding and its images' NLM ids."""

    uid: int
    source: str  # file (and row) it was read from, for messages
    examination: str = ""  # the image caption (NLM) or the ``image`` column (Kaggle)
    sections: dict[str, str] = field(default_factory=dict)  # SECTION_NAMES -> text ("" when empty)
    mesh: str = ""  # manual MeSH coding, terms joined by ";" as in Kaggle's MeSH column
    image_ids: list[str] = field(default_factory=list)  # NLM image ids, e.g. CXR1_1_IM-0001-3001

    @property
    def has_label_text(self) -> bool:
        """True when the report has findings or an impression (the text labels are read from)."""
        return bool(self.sections.get("findings") or self.sections.get("impression"))


@dataclass(frozen=True)
class Skip:
    """One thing of the download left out: the file (or archive member), a fixed reason, the ids, details."""

    file: str
    reason: str  # one of a fixed set of phrases, so skips can be counted by reason
    uid: int | None = None
    image_id: str | None = None
    detail: str = ""  # the error message or the other party (e.g. the report that kept an image)

    def as_row(self) -> dict:
        """A row of openi-skipped.csv."""
        return {
            "file": self.file,
            "uid": self.uid,
            "image_id": self.image_id,
            "reason": self.reason,
            "detail": self.detail,
        }


def squash(text: str | None) -> str:
    """Whitespace runs (newlines included) as single spaces, stripped; None as ""."""
    return " ".join(str(text or "").split())


def parse_uid(text: str | int | None) -> int | None:
    """``CXR12``, ``12`` or ``0012`` -> 12; None for anything else or a uid too large for the ids."""
    match = _UID.match(str(text if text is not None else ""))
    if match is None:
        return None
    uid = int(match.group(1))
    return uid if 0 < uid <= MAX_UID else None


def dicom_id_from_filename(name: str) -> str:
    """The layout's dicom_id of a PNG: its file name without ``.png``/``.dcm.png``, starting ``CXR``."""
    stem = _IMAGE_SUFFIXES.sub("", name.replace("\\", "/").rsplit("/", 1)[-1])
    return stem if stem.upper().startswith("CXR") else f"CXR{stem}"


def image_key(name: str) -> str:
    """What NLM ids and Kaggle file names of one image share: ``<uid>_IM-...``.

    NLM's ``CXR1_1_IM-0001-3001`` (some NLM ids carry that extra ``_1``), NLM's
    ``CXR1000_IM-0003-1001.png`` and Kaggle's ``1_IM-0001-3001.dcm.png`` give ``1_IM-0001-3001``
    and ``1000_IM-0003-1001``; a name without ``IM-`` gives its stem without ``CXR``.
    """
    stem = dicom_id_from_filename(name)[3:]
    match = _KEY.match(stem)
    return f"{int(match.group(1))}_{match.group(2)}" if match else stem


def subject_id(uid: int) -> int:
    """The layout's subject id of a report: 10000000 + uid (one subject per report)."""
    return SUBJECT_BASE + uid


def study_id(uid: int) -> int:
    """The layout's study id of a report: 50000000 + uid."""
    return STUDY_BASE + uid


def drop_duplicates(reports: list[OpenIReport]) -> tuple[list[OpenIReport], list[Skip]]:
    """The first report of each uid, each image for the first report listing it; skips for the rest."""
    kept: list[OpenIReport] = []
    skips: list[Skip] = []
    seen_uids: set[int] = set()
    owner: dict[str, int] = {}  # image key -> uid of the report that keeps it
    for report in reports:
        if report.uid in seen_uids:
            skips.append(Skip(report.source, "duplicate report uid (first kept)", report.uid))
            continue
        seen_uids.add(report.uid)
        images = []
        for image_id in report.image_ids:
            key = image_key(image_id)
            if key in owner:
                skips.append(
                    Skip(
                        report.source,
                        "image id listed twice (first listing kept)",
                        report.uid,
                        image_id,
                        f"first listed by report CXR{owner[key]}",
                    )
                )
                continue
            owner[key] = report.uid
            images.append(image_id)
        report.image_ids = images
        kept.append(report)
    return kept, skips
