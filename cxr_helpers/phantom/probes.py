"""The probe set: fresh frontal images with exactly one clear finding each, and the same image without it.

Localisation checks on the phantom's own studies are muddied by co-occurring findings (is the
heatmap on the effusion or on the heart beside it?). A probe has one finding only, drawn clearly
on a frontal view (PA or AP), so a heatmap for its label has exactly one right answer: the
finding's mask. Each probe also comes with its counterfactual, the same image (same anatomy, same
noise) without the finding, so a model's score can be compared with and without it.

Probes are drawn like the phantom's images (the same anatomy, findings and exposure), with
severity, side and lung zone sampled as in the phantom's cases; Support Devices probes show one
device type each, in turn. Each probe has its own random stream (seed, label, number), so the
set is the same for a seed whatever the order or number of probes written. A probe whose
finding would be hidden (for example behind the heart) is redrawn.

Written to a folder::

    probes.csv              probe_id, label, severity, side, zone, view, rows, cols, device
    images/PROBE_ID.jpg     the probe (JPEG, like the phantom's images)
    without/PROBE_ID.jpg    the same image without its finding
    masks/PROBE_ID.npz      one boolean array, key = the probe's label
    probes.json             the settings: seed, per_label, image_size, generator version
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.phantom.anatomy import Anatomy, sample_anatomy, sample_traits
from cxr_helpers.phantom.case import DEVICES, FINDING_LABELS, SEVERITIES, choice, sample_side, sample_zone
from cxr_helpers.phantom.counterfactual import grow, render_pair
from cxr_helpers.phantom.findings import FindingSpec
from cxr_helpers.phantom.layout import decode_jpeg, encode_jpeg, save_masks
from cxr_helpers.phantom.phrases import SHORT_NAMES
from cxr_helpers.phantom.render import blur_reach
from cxr_helpers.phantom.settings import GENERATOR_VERSION, read_settings

PROBE_COLUMNS = ("probe_id", "label", "severity", "side", "zone", "view", "rows", "cols", "device")
PROBE_VIEWS = (("PA", "AP"), (0.6, 0.4))
SEVERITY_PROBS = (0.45, 0.38, 0.17)  # as in the phantom's cases
MAX_TRIES = 20  # redraws of a probe whose finding would be hidden


@dataclass(frozen=True)
class Probe:
    """One probe: its row of probes.csv, and the image with and without its finding (before JPEG)."""

    row: dict
    image: np.ndarray  # uint8
    without: np.ndarray  # uint8
    mask: np.ndarray  # bool
    footprint: np.ndarray  # bool: the only pixels where ``image`` and ``without`` may differ (before JPEG)


@dataclass(frozen=True)
class ProbeSet:
    """A written probe set, loaded: its table and, row by row, the images, counterfactuals and masks."""

    table: pd.DataFrame  # probes.csv
    images: np.ndarray  # uint8 (N, S, S): the probes as stored (JPEG-decoded)
    without: np.ndarray  # uint8 (N, S, S): the same images without their finding
    masks: np.ndarray  # bool (N, S, S): each probe's finding


def probe_id(label: str, number: int) -> str:
    """A readable id: the label's three-letter name and the probe's number, e.g. EFF-007."""
    short = {name: code for code, name in SHORT_NAMES.items()}
    return f"{short[label]}-{number:03d}"


def _finding(rng: np.random.Generator, label: str, number: int) -> FindingSpec:
    """The probe's one finding: clear, with severity, side and zone sampled as in the phantom's cases."""
    device = DEVICES[number % len(DEVICES)]  # one device type each, in turn
    return FindingSpec(label=label, strength=1.0, severity=SEVERITIES.index(choice(rng, SEVERITIES, p=SEVERITY_PROBS)),
                       side=sample_side(rng, label), zone=sample_zone(rng, label),
                       devices=(device,) if label == "Support Devices" else (), seed=int(rng.integers(2**31)))


def _anatomy(rng: np.random.Generator, image_size: int) -> Anatomy:
    """A fresh patient on a square frontal view."""
    view = choice(rng, *PROBE_VIEWS)
    return sample_anatomy(rng, view, image_size, image_size, sample_traits(rng))


def make_probe(label: str, number: int, image_size: int = 128, seed: int = 0) -> Probe:
    """Probe ``number`` of ``label``: a frontal image with that finding only, and the image without it."""
    if label not in FINDING_LABELS:
        raise ValueError(f"no probes for {label!r}; one of: {', '.join(FINDING_LABELS)}")
    rng = np.random.default_rng([seed, 5, FINDING_LABELS.index(label), number])
    for _ in range(MAX_TRIES):
        anatomy, spec = _anatomy(rng, image_size), _finding(rng, label, number)
        pair = render_pair(anatomy, [spec], label)
        mask = pair.masks[label]
        if mask.any() and (pair.image != pair.without)[mask].any():
            break
    else:
        raise RuntimeError(f"probe {probe_id(label, number)}: the finding stayed hidden in {MAX_TRIES} draws")
    row = {"probe_id": probe_id(label, number), "label": label, "severity": SEVERITIES[spec.severity],
           "side": spec.side, "zone": spec.zone, "view": anatomy.view, "rows": anatomy.rows, "cols": anatomy.cols,
           "device": spec.devices[0] if spec.devices else ""}
    return Probe(row, pair.image, pair.without, mask, grow(pair.changed, blur_reach(pair.pixel)))


def write_probes(out: Path, per_label: int = 30, image_size: int = 128, seed: int = 0,
                 labels: tuple[str, ...] = FINDING_LABELS) -> pd.DataFrame:
    """Write ``per_label`` probes of every label to ``out`` (see the module's docstring); return probes.csv."""
    if per_label < 1:
        raise ValueError(f"per_label must be at least 1, got {per_label}")
    out = Path(out)
    for folder in ("images", "without", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for label in labels:
        for number in range(per_label):
            probe = make_probe(label, number, image_size, seed)
            name = probe.row["probe_id"]
            (out / "images" / f"{name}.jpg").write_bytes(encode_jpeg(probe.image))
            (out / "without" / f"{name}.jpg").write_bytes(encode_jpeg(probe.without))
            save_masks({label: probe.mask}, out / "masks" / f"{name}.npz")
            rows.append(probe.row)
    table = pd.DataFrame(rows, columns=list(PROBE_COLUMNS))
    table.to_csv(out / "probes.csv", index=False, lineterminator="\n")
    settings = {"seed": seed, "per_label": per_label, "image_size": image_size, "labels": list(labels),
                "version": GENERATOR_VERSION}
    (out / "probes.json").write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    return table


def load_probes(folder: Path) -> ProbeSet:
    """Read a probe set written by ``write_probes``: its table, images, counterfactuals and masks."""
    folder = Path(folder)
    if not (folder / "probes.csv").is_file():
        raise FileNotFoundError(f"no probes.csv in {folder}: write the probe set with write_probes first")
    table = pd.read_csv(folder / "probes.csv", keep_default_na=False)
    images, without, masks = [], [], []
    for name, label in zip(table["probe_id"], table["label"], strict=True):
        images.append(decode_jpeg((folder / "images" / f"{name}.jpg").read_bytes()))
        without.append(decode_jpeg((folder / "without" / f"{name}.jpg").read_bytes()))
        with np.load(folder / "masks" / f"{name}.npz") as stored:
            masks.append(stored[label])
    return ProbeSet(table, np.stack(images), np.stack(without), np.stack(masks))


def ensure_probes(phantom: Path, per_label: int = 30) -> ProbeSet:
    """The phantom's probe set (``<phantom>/probes``), written first if missing or made otherwise.

    Written at the phantom's own JPEG size and seed (``ground_truth/phantom.json``), so the probes
    look like the phantom's images; ``per_label`` probes of every finding label.
    """
    folder = Path(phantom) / "probes"
    made = read_settings(Path(phantom))
    wanted = {"seed": made.seed, "per_label": per_label, "image_size": made.image_size, "version": GENERATOR_VERSION}
    found = json.loads((folder / "probes.json").read_text()) if (folder / "probes.json").is_file() else {}
    if any(found.get(key) != value for key, value in wanted.items()):
        write_probes(folder, per_label=per_label, image_size=made.image_size, seed=made.seed)
    return load_probes(folder)
