"""NLM's form of the reports: ``NLMCXR_reports.tgz`` or its unpacked ``ecgen-radiology/`` folder.

One XML file per report, read with ``xml.etree`` and tolerant of where things sit::

    <eCitation>
      <uId id="CXR1"/>
      <MedlineCitation><Article><Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">...</AbstractText>
        <AbstractText Label="FINDINGS">...</AbstractText>      (may be empty or missing)
        <AbstractText Label="IMPRESSION">...</AbstractText>
      </Abstract></Article></MedlineCitation>
      <MeSH><major>Cardiomegaly/borderline</major><minor>...</minor><automatic>...</automatic></MeSH>
      <parentImage id="CXR1_1_IM-0001-3001"><caption>Xray Chest PA and Lateral</caption>...</parentImage>
    </eCitation>

The MeSH field keeps the manual coding (``major`` and ``minor`` terms, joined by ";" as in the
Kaggle CSV); ``automatic`` terms are machine-extracted and left out. A file with a DOCTYPE or
entity declarations is not parsed at all (no entity is ever expanded or fetched).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from cxr_helpers.openi.archive import ArchiveDamaged, archive_kind, base_name, iter_members
from cxr_helpers.openi.records import SECTION_NAMES, OpenIReport, Skip, parse_uid, squash

XML_SUFFIXES = (".xml",)
MESH_TAGS = ("major", "minor")
UID_ELEMENTS = ("uId", "IUXRId", "pmcId")  # where the report number is, in order of trust


def _report_uid(root: ET.Element, file_name: str) -> int | None:
    """The report number from ``<uId id="CXR1"/>`` (or IUXRId, pmcId), else from the file name ``1.xml``."""
    for tag in UID_ELEMENTS:
        for node in root.iter(tag):
            uid = parse_uid(node.get("id"))
            if uid is not None:
                return uid
    return parse_uid(re.sub(r"\.xml$", "", base_name(file_name), flags=re.IGNORECASE))


def _text(node: ET.Element) -> str:
    """All text inside an element, whitespace squashed."""
    return squash("".join(node.itertext()))


def parse_report_xml(data: bytes, source: str) -> OpenIReport:
    """One NLM report; ValueError (or ET.ParseError) naming ``source`` if it cannot be read."""
    head = data[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data.upper():
        raise ValueError("has a DOCTYPE or entity declarations: not parsed")
    root = ET.fromstring(data)
    uid = _report_uid(root, source)
    if uid is None:
        raise ValueError('no report id (<uId id="CXR..."/>) and no number in the file name')
    sections = {name: "" for name in SECTION_NAMES}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or node.get("label") or "").strip().lower()
        if label in sections:
            sections[label] = squash(f"{sections[label]} {_text(node)}")
    mesh = [_text(term) for parent in root.iter("MeSH") for term in parent if term.tag in MESH_TAGS]
    images, captions = [], []
    for node in root.iter("parentImage"):
        image_id = (node.get("id") or "").strip()
        if image_id:
            images.append(image_id)
        captions += [_text(caption) for caption in node.iter("caption")]
    examination = next((caption for caption in captions if caption), "")
    return OpenIReport(uid, source, examination, sections, ";".join(t for t in mesh if t), images)


def read_nlm_reports(path: Path) -> tuple[list[OpenIReport], list[Skip], int]:
    """All reports of the archive or folder (sorted by uid), the unreadable ones as skips, files read."""
    path = Path(path)
    in_archive = archive_kind(path) != "folder"
    reports: list[OpenIReport] = []
    skips: list[Skip] = []
    files = 0
    for member in iter_members(path, XML_SUFFIXES):
        if isinstance(member, ArchiveDamaged):
            skips.append(
                Skip(
                    member.archive,
                    "reports archive damaged: reports after this point not read",
                    detail=f"after {member.after or 'its start'}: {member.error}",
                )
            )
            break
        files += 1
        source = f"{path}:{member.name}" if in_archive else str(member.path)
        try:
            reports.append(parse_report_xml(member.read(), source))
        except (ET.ParseError, ValueError, OSError) as error:
            skips.append(Skip(source, "report XML unreadable", detail=f"{type(error).__name__}: {error}"))
    reports.sort(key=lambda r: (r.uid, base_name(r.source)))
    return reports, skips, files
