"""Small Open-i downloads for tests, in NLM's form (XML + PNG, folders or .tgz) and Kaggle's (CSVs + PNGs).

The reports are hand-written for these tests (not taken from the collection) in the shapes the
real files have: empty and missing sections, ``XXXX`` for removed words, MeSH terms with
qualifiers, 1 to 3 images per report. The images are drawn schematically: a frontal view has a
bright mediastinum between two dark lung fields, a lateral one lung field and the spine near
an edge. Each case the importer must survive is here once: a report without images, one
without findings or impression, an empty section element, a duplicate report uid, an image
without report, a duplicate image file, a corrupt and a truncated PNG, 16-bit and RGB PNGs, an
unreadable XML file.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd
from PIL import Image


@dataclass
class FixtureImage:
    uid: int
    tail: str  # "IM-0101-1001": NLM CXR<uid>_IM-0101-1001 (or CXR<uid>_1_IM-...), Kaggle <uid>_IM-...dcm.png
    view: str  # "frontal" or "lateral"
    kind: str = "L"  # "L" (8-bit), "I;16" (16-bit), "RGB", "corrupt" (not an image), "truncated"
    present: bool = True  # False: listed by the report but not in the images
    extra: bool = False  # NLM id with the extra "_1" some real ids have

    @property
    def nlm_id(self) -> str:
        return f"CXR{self.uid}_{'1_' if self.extra else ''}{self.tail}"

    @property
    def kaggle_file(self) -> str:
        return f"{self.uid}_{self.tail}.dcm.png"


@dataclass
class FixtureReport:
    uid: int
    caption: str
    indication: str
    comparison: str
    findings: str
    impression: str
    major: list[str]
    minor: list[str] = field(default_factory=list)
    images: list[FixtureImage] = field(default_factory=list)

    @property
    def mesh(self) -> str:
        return ";".join(self.major + self.minor)


REPORTS = [
    FixtureReport(
        1,
        "Xray Chest PA and Lateral",
        "Routine screening, XXXX-year-old male.",
        "None.",
        "Heart size is normal. The lungs are clear without focal airspace disease. No pleural effusion "
        "or pneumothorax.",
        "No acute cardiopulmonary abnormality.",
        ["normal"],
        images=[
            FixtureImage(1, "IM-0101-1001", "frontal", extra=True),
            FixtureImage(1, "IM-0101-2001", "lateral"),
        ],
    ),
    FixtureReport(
        2,
        "PA and lateral chest x-XXXX",
        "Shortness of breath",
        "XXXX",
        "The heart is mildly enlarged. Small left pleural effusion. No pneumothorax.",
        "Mild cardiomegaly with a small left pleural effusion.",
        ["Cardiomegaly/mild", "Pleural Effusion/left/small"],
        images=[FixtureImage(2, "IM-0102-1001", "frontal"), FixtureImage(2, "IM-0102-2001", "lateral")],
    ),
    FixtureReport(
        3,
        "Chest, 2 views, frontal and lateral",
        "Cough",
        "Chest radiograph XXXX.",
        "Streaky opacity at the left base. Heart size normal.",
        "Left basilar atelectasis.",
        ["Pulmonary Atelectasis/base/left"],
        ["Opacity/lung/base/left"],
        images=[
            FixtureImage(3, "IM-0103-1001", "frontal"),
            FixtureImage(3, "IM-0103-1002", "frontal"),
            FixtureImage(3, "IM-0103-2001", "lateral"),
        ],
    ),
    FixtureReport(
        4,
        "AP portable chest",
        "Chest pain",
        "",
        "",
        "No acute disease.",
        ["normal"],
        images=[FixtureImage(4, "IM-0104-1001", "frontal")],
    ),
    FixtureReport(
        5, "Xray Chest PA and Lateral", "Fever", "None.", "Lungs are clear.", "Normal chest.", ["normal"]
    ),  # no images at all
    FixtureReport(
        6,
        "Xray Chest PA and Lateral",
        "Follow-up XXXX",
        "XXXX",
        "",
        "",
        ["normal"],
        images=[FixtureImage(6, "IM-0106-1001", "frontal")],
    ),  # nothing to label
    FixtureReport(
        7,
        "PA and lateral views of the chest",
        "Chest pain after a fall",
        "None.",
        "Small right apical pneumothorax. No rib fracture seen.",
        "Small right pneumothorax.",
        ["Pneumothorax/apex/right/small"],
        images=[
            FixtureImage(7, "IM-0107-1001", "frontal"),
            FixtureImage(7, "IM-0107-2001", "lateral", "corrupt"),
            FixtureImage(7, "IM-0107-3001", "lateral", present=False),
        ],
    ),
    FixtureReport(
        8,
        "Chest x-XXXX, 2 views",
        "Fever and cough",
        "",
        "Airspace consolidation in the right lower lobe.",
        "Right lower lobe pneumonia.",
        ["Pneumonia/lung/lower lobe/right", "Consolidation/lung/lower lobe/right"],
        images=[
            FixtureImage(8, "IM-0108-1001", "frontal", "I;16"),
            FixtureImage(8, "IM-0108-2001", "lateral", "RGB"),
        ],
    ),
    FixtureReport(
        9,
        "Xray Chest PA and Lateral",
        "Weakness",
        "None.",
        "No focal consolidation.",
        "No acute findings.",
        ["normal"],
        images=[FixtureImage(9, "IM-0109-1001", "frontal", "truncated")],
    ),  # its only image is bad
]
DUPLICATE = FixtureReport(
    2,
    "Xray Chest PA",
    "Duplicate of report 2",
    "",
    "Clear lungs.",
    "Normal.",
    ["normal"],
    images=[FixtureImage(2, "IM-0102-1001", "frontal")],
)
ORPHAN = FixtureImage(99, "IM-0999-1001", "frontal")  # an image without report
WRITTEN_UIDS = (1, 2, 3, 4, 7, 8)  # the reports a correct import writes
SIZE = (72, 88)  # (width, height): small, portrait


def draw(view: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A schematic radiograph (uint8, height x width): frontal or lateral."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    pixels = np.full((height, width), 15.0)
    pixels[(x > 0.06) & (x < 0.94) & (y > 0.04)] = 150.0  # the body
    if view == "frontal":
        for left, right in ((0.14, 0.42), (0.58, 0.86)):
            pixels[(x > left) & (x < right) & (y > 0.18) & (y < 0.75)] = 55.0  # two lung fields
        pixels[(x > 0.44) & (x < 0.56) & (y > 0.05)] = 215.0  # mediastinum and spine
    else:
        pixels[(x > 0.18) & (x < 0.76) & (y > 0.18) & (y < 0.78)] = 65.0  # one lung field
        pixels[(x > 0.78) & (x < 0.9) & (y > 0.05)] = 220.0  # the spine near the back
        pixels[((x - 0.35) ** 2 + (y - 0.66) ** 2) < 0.012] = 170.0  # the heart, in front
    noise = np.random.default_rng(int(pixels.sum()) % 2**32).normal(0, 4, pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def png_bytes(image: FixtureImage) -> bytes:
    """The PNG file of a fixture image (or the broken bytes its kind asks for)."""
    pixels = draw(image.view)
    if image.kind == "corrupt":
        return b"this is not a PNG file"
    buffer = io.BytesIO()
    if image.kind == "I;16":
        Image.fromarray(pixels.astype(np.uint16) * 200 + 1000).save(
            buffer, format="PNG"
        )  # 16-bit, not 0-65535
    elif image.kind == "RGB":
        Image.fromarray(pixels).convert("RGB").save(buffer, format="PNG")
    else:
        Image.fromarray(pixels).save(buffer, format="PNG")
    data = buffer.getvalue()
    return data[: len(data) // 2] if image.kind == "truncated" else data


def nlm_xml(report: FixtureReport) -> bytes:
    """An NLM report file as the collection writes them."""

    def section(label: str, text: str) -> str:
        return (
            f'<AbstractText Label="{label}">{escape(text)}</AbstractText>'
            if text
            else f'<AbstractText Label="{label}"/>'
        )

    sections = "\n".join(
        section(label, getattr(report, label.lower()))
        for label in ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
    )
    mesh = (
        "".join(f"<major>{escape(t)}</major>" for t in report.major)
        + "".join(f"<minor>{escape(t)}</minor>" for t in report.minor)
        + "<automatic>chest</automatic>"
    )
    images = "\n".join(
        f'<parentImage id="{image.nlm_id}"><figureId>F{k + 1}</figureId>'
        f"<caption>{escape(report.caption)}</caption>"
        f'<panel type="single"><url>/hadoop/storage/radiology/extract/{image.nlm_id}.jpg</url></panel>'
        "</parentImage>"
        for k, image in enumerate(report.images)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="CXR{report.uid}"/>
  <pmcId id="{report.uid}"/>
  <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
    <Article PubModel="Electronic">
      <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
      <Abstract>
{sections}
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH>{mesh}</MeSH>
{images}
</eCitation>
""".encode()


def _images(reports: list[FixtureReport]) -> list[FixtureImage]:
    """Every image file the download holds (present images of the reports, then the orphan)."""
    return [image for report in reports for image in report.images if image.present] + [ORPHAN]


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A .tgz with the given (name, bytes) members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_nlm(root: Path, archive: bool, reports: list[FixtureReport] = REPORTS) -> tuple[Path, Path]:
    """NLM's form under ``root``: (reports, images) as .tgz files or as folders."""
    root.mkdir(parents=True, exist_ok=True)
    xml = [(f"ecgen-radiology/{r.uid}.xml", nlm_xml(r)) for r in reports]
    xml += [
        ("ecgen-radiology/9999.xml", nlm_xml(DUPLICATE)),
        ("ecgen-radiology/broken.xml", b"<eCitation><uId id='CXR77'/><MeSH>"),
        ("ecgen-radiology/readme.txt", b"not a report"),
    ]
    png = [(f"NLMCXR_png/{image.nlm_id}.png", png_bytes(image)) for image in _images(reports)]
    png.append((f"NLMCXR_png/copy/{reports[0].images[0].nlm_id}.png", png_bytes(reports[0].images[0])))
    if archive:
        return _tar(root / "NLMCXR_reports.tgz", xml), _tar(root / "NLMCXR_png.tgz", png)
    for name, data in xml + png:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / "ecgen-radiology", root / "NLMCXR_png"


def kaggle_tables(reports: list[FixtureReport]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """indiana_reports.csv and indiana_projections.csv of the reports (plus the duplicate uid)."""
    rows = [
        {
            "uid": r.uid,
            "MeSH": r.mesh,
            "Problems": ";".join(t.split("/")[0] for t in r.major),
            "image": r.caption,
            "indication": r.indication,
            "comparison": r.comparison,
            "findings": r.findings,
            "impression": r.impression,
        }
        for r in [*reports, DUPLICATE]
    ]
    projections = [
        {"uid": r.uid, "filename": i.kaggle_file, "projection": i.view.capitalize()}
        for r in reports
        for i in r.images
    ]
    return pd.DataFrame(rows), pd.DataFrame(projections)


def write_kaggle(root: Path, reports: list[FixtureReport] = REPORTS) -> tuple[Path, Path]:
    """Kaggle's form under ``root``: (folder with the two CSVs, images_normalized/)."""
    table, projections = kaggle_tables(reports)
    folder, images = root / "kaggle", root / "kaggle" / "images" / "images_normalized"
    images.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "indiana_reports.csv", index=False)
    projections.to_csv(folder / "indiana_projections.csv", index=False)
    for image in _images(reports):
        (images / image.kaggle_file).write_bytes(png_bytes(image))
    return folder, images
