"""The clinical case: which findings a study really has, with their severity, side and lung zone.

A study is first sampled as a ``ClinicalCase``: a care setting (outpatient, inpatient, ICU) and an
underlying problem, a "syndrome" (heart failure, infection, after surgery, trauma, cancer, or
nothing at all), that makes findings co-occur as in life: edema with an enlarged heart and
effusions, pneumonia with opacities, lines and tubes in the ICU. Prevalences follow MIMIC-CXR's,
with the rarest labels bumped up so that small phantoms still have positives. The images are
drawn from the case (``render``) and the report is written from it (``reports``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cxr_helpers.labels import CHEXPERT_LABELS

FINDING_LABELS: tuple[str, ...] = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")
SETTINGS = ("outpatient", "inpatient", "icu")
SYNDROMES = ("healthy", "heart_failure", "infection", "postop", "chronic", "trauma", "oncology")
DEVICES = ("et_tube", "central_line", "ng_tube", "pacemaker")
ZONES = ("upper", "middle", "lower")
SEVERITIES = ("mild", "moderate", "severe")
VISIBILITIES = ("clear", "subtle", "invisible")

# P(syndrome) among studies; "healthy" studies have no finding except possibly devices.
SYNDROME_PROBS = {
    "healthy": 0.37,
    "heart_failure": 0.18,
    "infection": 0.13,
    "postop": 0.12,
    "chronic": 0.08,
    "trauma": 0.06,
    "oncology": 0.06,
}
# P(finding present | syndrome). Tuned so the derived label rates land near MIMIC-CXR's published
# label rates; findings are truly present more often than labelled positive, because some are
# invisible, hedged, or described only in FINDINGS. The rare labels (Consolidation, Enlarged
# Cardiomediastinum, Fracture, Lung Lesion, Pleural Other, Pneumothorax) are bumped to about 5%
# positive labels, above MIMIC's 1-5%, so that a 40-study test fixture has positives for each
# label in its train split in most seeds (about 85-90% of seeds per label).
FINDING_PROBS: dict[str, dict[str, float]] = {
    "heart_failure": {"Cardiomegaly": 0.9, "Edema": 0.76, "Pleural Effusion": 0.82, "Atelectasis": 0.4,
                      "Lung Opacity": 0.37, "Enlarged Cardiomediastinum": 0.28, "Consolidation": 0.045},
    "infection": {"Pneumonia": 0.8, "Lung Opacity": 0.8, "Consolidation": 0.55, "Pleural Effusion": 0.34,
                  "Atelectasis": 0.4, "Edema": 0.06},
    "postop": {"Atelectasis": 0.74, "Pleural Effusion": 0.61, "Lung Opacity": 0.37, "Edema": 0.32,
               "Pneumothorax": 0.32, "Cardiomegaly": 0.35, "Enlarged Cardiomediastinum": 0.33,
               "Consolidation": 0.09, "Pneumonia": 0.1},
    "chronic": {"Cardiomegaly": 0.55, "Atelectasis": 0.47, "Lung Opacity": 0.37, "Lung Lesion": 0.3,
                "Pleural Other": 0.75, "Enlarged Cardiomediastinum": 0.33, "Fracture": 0.15,
                "Pleural Effusion": 0.27},
    "trauma": {"Fracture": 0.95, "Pneumothorax": 0.72, "Lung Opacity": 0.37, "Pleural Effusion": 0.27,
               "Atelectasis": 0.27},
    "oncology": {"Lung Lesion": 0.95, "Pleural Effusion": 0.54, "Pleural Other": 0.4, "Atelectasis": 0.34,
                 "Lung Opacity": 0.25, "Enlarged Cardiomediastinum": 0.18},
}
# P(setting | healthy or not): sicker patients are more often inpatients or in the ICU.
SETTING_PROBS = {True: (0.72, 0.2, 0.08), False: (0.3, 0.38, 0.32)}
DEVICE_PROBS = {"outpatient": 0.04, "inpatient": 0.3, "icu": 0.88}
VISIBILITY_PROBS = (0.6, 0.25, 0.15)  # clear, subtle, invisible (in life some findings hide)


@dataclass
class ClinicalCase:
    """One study's truth: setting, syndrome, findings present with their severity, side and zone."""

    setting: str
    syndrome: str
    sex: str
    present: dict[str, bool]
    severity: dict[str, str] = field(default_factory=dict)
    side: dict[str, str] = field(default_factory=dict)
    zone: dict[str, str] = field(default_factory=dict)
    visibility: dict[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()

    @property
    def findings(self) -> list[str]:
        """Labels truly present, in CheXpert order."""
        return [label for label in FINDING_LABELS if self.present.get(label)]


def choice(rng: np.random.Generator, options, p=None):
    """One element of a sequence (numpy's choice returns numpy scalars; keep Python objects)."""
    return options[int(rng.choice(len(options), p=p))]


def sample_case(rng: np.random.Generator, sex: str | None = None) -> ClinicalCase:
    """Draw one study's clinical truth with MIMIC-like prevalence and co-occurrence."""
    syndrome = choice(rng, SYNDROMES, p=[SYNDROME_PROBS[s] for s in SYNDROMES])
    healthy = syndrome == "healthy"
    setting = choice(rng, SETTINGS, p=SETTING_PROBS[healthy])
    if syndrome == "postop":
        setting = "icu" if rng.random() < 0.7 else "inpatient"
    present = {label: False for label in FINDING_LABELS}
    for label, p in FINDING_PROBS.get(syndrome, {}).items():
        present[label] = bool(rng.random() < p)
    if not healthy and not any(present.values()):
        # a sick study shows at least its syndrome's most typical finding
        present[max(FINDING_PROBS[syndrome], key=FINDING_PROBS[syndrome].get)] = True
    if present["Pneumonia"] and not (present["Consolidation"] or present["Lung Opacity"]):
        present["Lung Opacity"] = True
    devices: tuple[str, ...] = ()
    if rng.random() < DEVICE_PROBS[setting]:
        devices = sample_devices(rng, setting)
        present["Support Devices"] = True
    case = ClinicalCase(setting=setting, syndrome=syndrome, sex=sex or choice(rng, ("M", "F")),
                        present=present, devices=devices)
    for label in case.findings:
        case.severity[label] = choice(rng, SEVERITIES, p=(0.45, 0.38, 0.17))
        case.side[label] = sample_side(rng, label)
        case.zone[label] = sample_zone(rng, label)
    for label in ("Consolidation", "Lung Opacity"):  # pneumonia's opacity is usually the same one
        if present["Pneumonia"] and present[label] and rng.random() < 0.8:
            case.side[label], case.zone[label] = case.side["Pneumonia"], case.zone["Pneumonia"]
    for label in case.findings:
        p_vis = (0.85, 0.13, 0.02) if label == "Support Devices" else VISIBILITY_PROBS
        case.visibility[label] = choice(rng, VISIBILITIES, p=p_vis)
    return case


def sample_devices(rng: np.random.Generator, setting: str) -> tuple[str, ...]:
    """Lines and tubes: ICU studies carry more of them."""
    p = {"et_tube": 0.5, "central_line": 0.6, "ng_tube": 0.4, "pacemaker": 0.15}
    if setting != "icu":
        p = {"et_tube": 0.05, "central_line": 0.55, "ng_tube": 0.1, "pacemaker": 0.45}
    chosen = tuple(d for d in DEVICES if rng.random() < p[d])
    return chosen or (choice(rng, ("central_line", "pacemaker")),)


def sample_side(rng: np.random.Generator, label: str) -> str:
    """Right, left or bilateral, as the finding allows."""
    if label == "Support Devices":  # the side of the central line, if any (most are right-sided)
        return "right" if rng.random() < 0.7 else "left"
    if label in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
        return "midline"
    if label in ("Edema",):
        return "bilateral"
    if label in ("Pleural Effusion", "Atelectasis", "Lung Opacity") and rng.random() < 0.3:
        return "bilateral"
    return choice(rng, ("right", "left"))


def sample_zone(rng: np.random.Generator, label: str) -> str:
    """Lung zone where a finding sits (effusion and atelectasis are basal, pneumothorax apical)."""
    if label in ("Pleural Effusion", "Atelectasis"):
        return "lower"
    if label in ("Pneumothorax",):
        return "upper"
    if label in ("Consolidation", "Pneumonia", "Lung Opacity"):
        return choice(rng, ZONES, p=(0.25, 0.2, 0.55))
    if label in ("Fracture", "Lung Lesion", "Pleural Other"):
        return choice(rng, ZONES)
    return "middle"


