"""The phantom's clinical side: which findings a study really has, its MIMIC-style report, its labels.

A study is first sampled as a ``ClinicalCase`` (care setting, an underlying "syndrome" that makes
findings co-occur, the findings truly present with severity, side and lung zone). The report is
then written sentence by sentence from phrase banks (several phrasings per finding, negations,
hedges), wrapped like MIMIC's text files, while the character span of every finding mention is
recorded. Labels come from those mentions with CheXpert semantics: only the section the labeler
reads counts (IMPRESSION, else FINDINGS, else the last paragraph); 1 positive, 0 negated,
-1 uncertain, blank not mentioned; No Finding is 1 when no other label but Support Devices is
positive or uncertain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from cxr_helpers.labels import CHEXPERT_LABELS

FINDING_LABELS: tuple[str, ...] = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")
SHORT_NAMES = {
    "ATE": "Atelectasis",
    "CAR": "Cardiomegaly",
    "CON": "Consolidation",
    "EDE": "Edema",
    "ECM": "Enlarged Cardiomediastinum",
    "FRA": "Fracture",
    "LES": "Lung Lesion",
    "OPA": "Lung Opacity",
    "EFF": "Pleural Effusion",
    "PLO": "Pleural Other",
    "PNA": "Pneumonia",
    "PTX": "Pneumothorax",
    "DEV": "Support Devices",
}
# Lower-case word stems, one of which every span of the label contains (tests check this; the
# INDICATION never contains any of them, so the leak-free text setting stays leak-free).
LABEL_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelecta",),
    "Cardiomegaly": ("cardiomegaly", "heart", "cardiac"),
    "Consolidation": ("consolidat",),
    "Edema": ("edema", "congestion"),
    "Enlarged Cardiomediastinum": ("mediastin",),
    "Fracture": ("fracture",),
    "Lung Lesion": ("nodul", "mass", "lesion"),
    "Lung Opacity": ("opacit",),
    "Pleural Effusion": ("effusion",),
    "Pleural Other": ("thickening",),
    "Pneumonia": ("pneumonia", "infection"),
    "Pneumothorax": ("pneumothora",),
    "Support Devices": ("tube", "line", "catheter", "pacemaker", "pacer", "device", "lead", "wire"),
}
SETTINGS = ("outpatient", "inpatient", "icu")
SYNDROMES = ("healthy", "heart_failure", "infection", "postop", "chronic", "trauma", "oncology")
DEVICES = ("et_tube", "central_line", "ng_tube", "pacemaker")
ZONES = ("upper", "middle", "lower")
SEVERITIES = ("mild", "moderate", "severe")
VISIBILITIES = ("clear", "subtle", "invisible")
CODE_WORDS = {1: "positive", 0: "negative", -1: "uncertain"}

# --- the clinical case -------------------------------------------------------------------------

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
# P(finding present | syndrome). Tuned so the derived label rates land near MIMIC-CXR's table
# (ARCHITECTURE.md); findings are truly present more often than labelled positive, because some
# are invisible, hedged, or described only in FINDINGS. The rare labels (Consolidation, Enlarged
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


def _choice(rng: np.random.Generator, options, p=None):
    """One element of a sequence (numpy's choice returns numpy scalars; keep Python objects)."""
    return options[int(rng.choice(len(options), p=p))]


def sample_case(rng: np.random.Generator, sex: str | None = None) -> ClinicalCase:
    """Draw one study's clinical truth with MIMIC-like prevalence and co-occurrence."""
    syndrome = _choice(rng, SYNDROMES, p=[SYNDROME_PROBS[s] for s in SYNDROMES])
    healthy = syndrome == "healthy"
    setting = _choice(rng, SETTINGS, p=SETTING_PROBS[healthy])
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
        devices = _sample_devices(rng, setting)
        present["Support Devices"] = True
    case = ClinicalCase(setting=setting, syndrome=syndrome, sex=sex or _choice(rng, ("M", "F")),
                        present=present, devices=devices)
    for label in case.findings:
        case.severity[label] = _choice(rng, SEVERITIES, p=(0.45, 0.38, 0.17))
        case.side[label] = _sample_side(rng, label)
        case.zone[label] = _sample_zone(rng, label)
    for label in ("Consolidation", "Lung Opacity"):  # pneumonia's opacity is usually the same one
        if present["Pneumonia"] and present[label] and rng.random() < 0.8:
            case.side[label], case.zone[label] = case.side["Pneumonia"], case.zone["Pneumonia"]
    for label in case.findings:
        p_vis = (0.85, 0.13, 0.02) if label == "Support Devices" else VISIBILITY_PROBS
        case.visibility[label] = _choice(rng, VISIBILITIES, p=p_vis)
    return case


def _sample_devices(rng: np.random.Generator, setting: str) -> tuple[str, ...]:
    """Lines and tubes: ICU studies carry more of them."""
    p = {"et_tube": 0.5, "central_line": 0.6, "ng_tube": 0.4, "pacemaker": 0.15}
    if setting != "icu":
        p = {"et_tube": 0.05, "central_line": 0.55, "ng_tube": 0.1, "pacemaker": 0.45}
    chosen = tuple(d for d in DEVICES if rng.random() < p[d])
    return chosen or (_choice(rng, ("central_line", "pacemaker")),)


def _sample_side(rng: np.random.Generator, label: str) -> str:
    """Right, left or bilateral, as the finding allows."""
    if label == "Support Devices":  # the side of the central line, if any (most are right-sided)
        return "right" if rng.random() < 0.7 else "left"
    if label in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
        return "midline"
    if label in ("Edema",):
        return "bilateral"
    if label in ("Pleural Effusion", "Atelectasis", "Lung Opacity") and rng.random() < 0.3:
        return "bilateral"
    return _choice(rng, ("right", "left"))


def _sample_zone(rng: np.random.Generator, label: str) -> str:
    """Lung zone where a finding sits (effusion and atelectasis are basal, pneumothorax apical)."""
    if label in ("Pleural Effusion", "Atelectasis"):
        return "lower"
    if label in ("Pneumothorax",):
        return "upper"
    if label in ("Consolidation", "Pneumonia", "Lung Opacity"):
        return _choice(rng, ZONES, p=(0.25, 0.2, 0.55))
    if label in ("Fracture", "Lung Lesion", "Pleural Other"):
        return _choice(rng, ZONES)
    return "middle"


# --- phrase banks --------------------------------------------------------------------------------
# "[[...]]" marks the words stating the finding (the recorded span). "{...}" are filled per study.
# A marker "[[ECM:...]]" names another label than the sentence's own (combined sentences).

POSITIVE: dict[str, list[str]] = {
    "Atelectasis": [
        "Plate-like [[atelectasis]] at the {side} base.",
        "{Side} basilar [[atelectasis]] is seen.",
        "There is [[atelectasis]] at the {side} lung base.",
        "Subsegmental [[atelectasis]] in the {side} lower lobe.",
        "Linear [[atelectasis]] at the {side} base.",
    ],
    "Cardiomegaly": [
        "The [[heart is {sev_adv} enlarged]].",
        "{Sev_adj} [[cardiomegaly]].",
        "The [[cardiac silhouette is {sev_adv} enlarged]].",
        "There is {sev_adj} [[cardiomegaly]].",
        "[[Heart size is {sev_adv} enlarged]].",
    ],
    "Consolidation": [
        "[[Consolidation]] in the {loc}.",
        "There is {loc} [[consolidation]].",
        "Dense {loc} [[consolidation]] is present.",
        "Focal [[consolidation]] in the {loc}.",
    ],
    "Edema": [
        "{Sev_adj} pulmonary [[edema]].",
        "There is {sev_adj} interstitial pulmonary [[edema]].",
        "Findings are consistent with {sev_adj} pulmonary [[edema]].",
        "{Sev_adj} pulmonary [[vascular congestion]] and interstitial [[edema]].",
        "Perihilar haziness consistent with {sev_adj} [[edema]].",
    ],
    "Enlarged Cardiomediastinum": [
        "The [[mediastinum is widened]].",
        "Widening of the [[mediastinum]].",
        "The [[cardiomediastinal silhouette is enlarged]].",
        "[[Mediastinal widening]] is noted.",
    ],
    "Fracture": [
        "Acute {side} rib [[fracture]].",
        "There is a [[fracture]] of the {side} {nth} rib.",
        "{Side} {nth} rib [[fracture]] is seen.",
        "Minimally displaced {side} rib [[fracture]].",
    ],
    "Lung Lesion": [
        "{Size_cm} cm [[nodule]] in the {loc}.",
        "There is a {size_cm} cm {loc} [[mass]].",
        "{Loc} pulmonary [[nodule]] measuring {size_cm} cm.",
        "A rounded [[nodule]] is seen in the {loc}.",
    ],
    "Lung Opacity": [
        "Patchy {loc} [[opacity]].",
        "There are patchy [[opacities]] in the {loc}.",
        "Ill-defined {loc} [[opacities]].",
        "Increased [[opacity]] in the {loc}.",
    ],
    "Pleural Effusion": [
        "There {is} {a}{size} {side} [[pleural effusion{s}]].",
        "{Size} {side} [[pleural effusion{s}]].",
        "{Size} {side} [[effusion{s}]] with blunting of the costophrenic angle.",
        "{Side} [[pleural effusion{s}]] {is} {size}.",
    ],
    "Pleural Other": [
        "{Side} apical [[pleural thickening]].",
        "There is {side} [[pleural thickening]].",
        "Chronic {side} [[pleural thickening]] is unchanged.",
    ],
    "Pneumonia": [
        "{Loc} [[pneumonia]].",
        "Findings consistent with {loc} [[pneumonia]].",
        "Findings compatible with [[pneumonia]] in the {loc}.",
        "{Loc} [[pneumonia]] is present.",
    ],
    "Pneumothorax": [
        "{Size} {side} apical [[pneumothorax]].",
        "There is a {size} {side} [[pneumothorax]].",
        "{Side} apical [[pneumothorax]] is {size}.",
        "{Size} {side} [[pneumothorax]] with visible pleural edge.",
    ],
}
DEVICE_SENTENCES: dict[str, list[str]] = {
    "et_tube": [
        "[[Endotracheal tube]] terminates {cm} cm above the carina.",
        "An [[ET tube]] is in standard position.",
        "The [[endotracheal tube]] tip is {cm} cm above the carina.",
    ],
    "central_line": [
        "{Side} internal jugular [[central line]] terminates in the SVC.",
        "{Side} [[PICC line]] tip in the mid SVC.",
        "[[Central venous catheter]] tip projects over the cavoatrial junction.",
    ],
    "ng_tube": [
        "[[Enteric tube]] passes below the diaphragm.",
        "[[Nasogastric tube]] courses into the stomach.",
        "An [[NG tube]] is in the stomach.",
    ],
    "pacemaker": [
        "Left chest wall [[pacemaker]] with [[leads]] in the right atrium and right ventricle.",
        "[[Pacemaker]] device with [[leads]] in standard position.",
        "Dual-chamber [[pacer]] is unchanged.",
    ],
}
DEVICE_SUMMARIES = [
    "[[Lines and tubes]] are in standard position.",
    "[[Support devices]] are unchanged in position.",
    "Satisfactory position of the [[support devices]].",
]
UNCERTAIN: dict[str, list[str]] = {
    "Atelectasis": [
        "Minimal {side} basilar changes likely reflect [[atelectasis]].",
        "Probable [[atelectasis]] at the {side} base.",
        "Possible subsegmental [[atelectasis]] in the {side} lower lobe.",
    ],
    "Cardiomegaly": [
        "Borderline [[heart size]].",
        "Possible mild [[cardiomegaly]].",
        "The [[cardiac silhouette]] may be mildly enlarged.",
    ],
    "Consolidation": [
        "Possible {loc} [[consolidation]].",
        "Cannot exclude early [[consolidation]] in the {loc}.",
        "Questionable {loc} [[consolidation]].",
    ],
    "Edema": [
        "Possible mild pulmonary [[edema]].",
        "Cannot exclude mild [[edema]].",
        "Findings may reflect mild pulmonary [[edema]].",
    ],
    "Enlarged Cardiomediastinum": [
        "The [[mediastinum]] may be widened.",
        "Possible [[mediastinal widening]], perhaps due to technique.",
        "The [[cardiomediastinal silhouette]] is possibly enlarged.",
    ],
    "Fracture": [
        "Possible nondisplaced {side} rib [[fracture]].",
        "Cannot exclude a {side} rib [[fracture]].",
    ],
    "Lung Lesion": [
        "Possible {loc} [[nodule]].",
        "Cannot exclude a {loc} [[nodule]].",
        "Questionable [[nodular density]] in the {loc}.",
    ],
    "Lung Opacity": [
        "Subtle {loc} [[opacity]] may be due to overlapping soft tissue.",
        "Possible faint [[opacity]] in the {loc}.",
    ],
    "Pleural Effusion": [
        "Possible small {side} [[pleural effusion]].",
        "Blunting of the {side} costophrenic angle may represent a small [[effusion]].",
        "Cannot exclude a small {side} [[pleural effusion]].",
    ],
    "Pleural Other": [
        "Possible {side} [[pleural thickening]].",
        "{Side} apical density may represent [[pleural thickening]].",
    ],
    "Pneumonia": [
        "Findings may represent [[pneumonia]] in the appropriate clinical setting.",
        "[[Pneumonia]] cannot be excluded.",
        "Possible early [[pneumonia]].",
        "Concerning for [[infection]].",
        "Possible developing [[pneumonia]] in the {loc}.",
    ],
    "Pneumothorax": [
        "Possible tiny {side} apical [[pneumothorax]].",
        "A small {side} apical [[pneumothorax]] cannot be excluded.",
    ],
    "Support Devices": [
        "[[Catheter]] tip may be in the right atrium.",
    ],
}
NEGATIVE: dict[str, list[str]] = {
    "Atelectasis": ["No [[atelectasis]].", "There is no [[atelectasis]]."],
    "Cardiomegaly": [
        "[[Heart size is normal]].",
        "The [[heart]] is not enlarged.",
        "The [[cardiac silhouette]] is within normal limits.",
        "Normal [[heart size]].",
        "No [[cardiomegaly]].",
    ],
    "Consolidation": ["No focal [[consolidation]].", "There is no [[consolidation]].",
                      "No evidence of focal [[consolidation]]."],
    "Edema": ["No pulmonary [[edema]].", "There is no [[edema]].", "No evidence of pulmonary [[edema]]."],
    "Enlarged Cardiomediastinum": [
        "The [[cardiomediastinal silhouette]] is normal.",
        "Normal [[mediastinal contours]].",
        "[[Mediastinal]] and hilar contours are normal.",
        "The [[cardiomediastinal silhouette]] is within normal limits.",
    ],
    "Fracture": ["No displaced [[fracture]].", "No acute rib [[fracture]].", "No [[fracture]] is identified."],
    "Lung Lesion": ["No suspicious pulmonary [[nodule]].", "No [[mass]] is seen."],
    "Lung Opacity": ["No focal [[opacity]].", "No new [[opacities]]."],
    "Pleural Effusion": ["No [[pleural effusion]].", "No large [[pleural effusion]].",
                         "There is no [[pleural effusion]].", "No [[effusion]] is seen."],
    "Pleural Other": ["No [[pleural thickening]]."],
    "Pneumonia": ["No evidence of [[pneumonia]].", "No radiographic evidence of [[pneumonia]].",
                  "No findings to suggest [[pneumonia]]."],
    "Pneumothorax": ["No [[pneumothorax]].", "There is no [[pneumothorax]].", "No [[pneumothorax]] is seen."],
    "Support Devices": ["Interval removal of the [[endotracheal tube]].",
                        "The [[nasogastric tube]] has been removed."],
}
# Combined negations as in "There is no focal consolidation, pleural effusion or pneumothorax."
LIST_NEGATION_FORMS = ("There is no {items}.", "No {items}.", "Without {items}.")
LIST_NEGATION_TERMS = {
    "Consolidation": "focal [[consolidation]]",
    "Pleural Effusion": "[[pleural effusion]]",
    "Pneumothorax": "[[pneumothorax]]",
    "Edema": "pulmonary [[edema]]",
    "Pneumonia": "[[pneumonia]]",
}
NORMAL_IMPRESSIONS = [
    "No acute cardiopulmonary process.",
    "No acute cardiopulmonary abnormality.",
    "No acute intrathoracic process.",
    "No acute findings in the chest.",
    "Normal chest radiograph.",
]
FILLER_FINDINGS = [
    "The lungs are clear.",
    "Lungs are well expanded and clear.",
    "Hilar contours are unremarkable.",
    "Osseous structures are unremarkable.",
    "The visualized upper abdomen is unremarkable.",
    "Mild degenerative changes in the thoracic spine.",
    "No free air below the right hemidiaphragm.",
]
# Indications never name a finding; a few complaints correlate with a syndrome, weakly.
INDICATION_COMPLAINTS = [
    "shortness of breath", "cough", "chest pain", "dyspnea", "hypoxia", "fever", "weakness",
    "concern for acute process", "preop evaluation", "follow up", "altered mental status",
    "abdominal pain", "syncope", "tachycardia", "fatigue",
]
SYNDROME_COMPLAINTS = {
    "heart_failure": ["leg swelling", "worsening dyspnea on exertion", "weight gain and orthopnea",
                      "hx CHF, increasing dyspnea"],
    "infection": ["fever and cough", "productive cough", "fever, elevated white count", "cough and chills"],
    "postop": ["status post CABG", "post procedure", "respiratory failure", "check position"],
    "trauma": ["fall from standing", "chest wall pain after fall", "motor vehicle collision", "rib pain"],
    "oncology": ["weight loss", "staging", "hemoptysis", "smoker with weight loss"],
    "chronic": ["COPD, worsening dyspnea", "chronic cough", "hx of smoking"],
}
P_SYNDROME_COMPLAINT = 0.35  # weak on purpose: an indication-only model learns a little, not a lot

SEV_ADJ = {"mild": "mild", "moderate": "moderate", "severe": "severe"}
SEV_ADV = {"mild": "mildly", "moderate": "moderately", "severe": "markedly"}
SIZE_WORDS = {"mild": ("small", "trace"), "moderate": ("moderate", "small-to-moderate"),
              "severe": ("large", "moderate-to-large")}
ZONE_WORDS = {"upper": ("upper lobe", "upper lung"), "middle": ("mid lung", "perihilar region"),
              "lower": ("lower lobe", "lung base")}
ZONE_WORDS_BILATERAL = {"upper": ("upper lobes", "upper lungs"), "middle": ("mid lungs", "perihilar regions"),
                        "lower": ("lower lobes", "lung bases")}
NTH = ("fifth", "sixth", "seventh", "eighth", "ninth")

# P(each finding is mentioned, and how) in the findings and impression sections.
P_FINDINGS_MENTION = 0.95          # a visible finding is described in FINDINGS
P_IMPRESSION_MENTION = {           # ... and summarised in the IMPRESSION
    "Atelectasis": 0.85, "Cardiomegaly": 0.85, "Support Devices": 0.8, "Lung Opacity": 0.85,
    "Fracture": 0.9, "Pleural Other": 0.75, "Enlarged Cardiomediastinum": 0.7,
}
P_UNCERTAIN_VISIBLE = {            # stated uncertain although visible (x2 when subtle)
    "Atelectasis": 0.12, "Enlarged Cardiomediastinum": 0.3, "Pneumonia": 0.22, "Edema": 0.2,
    "Consolidation": 0.2, "Lung Lesion": 0.12, "Lung Opacity": 0.04, "Support Devices": 0.0,
}
P_NEGATE_ABSENT = {                # absent finding explicitly negated (impression, findings)
    "Pneumothorax": (0.14, 0.45), "Pleural Effusion": (0.09, 0.4), "Edema": (0.09, 0.2),
    "Pneumonia": (0.11, 0.1), "Cardiomegaly": (0.035, 0.3), "Consolidation": (0.01, 0.2),
    "Enlarged Cardiomediastinum": (0.005, 0.15), "Lung Opacity": (0.01, 0.04),
    "Atelectasis": (0.003, 0.01), "Lung Lesion": (0.002, 0.015), "Fracture": (0.002, 0.015),
    "Pleural Other": (0.001, 0.005), "Support Devices": (0.0, 0.0),
}
P_DEVICE_REMOVED = 0.04  # inpatients without devices: "interval removal of the endotracheal tube"
P_HEDGE_ABSENT = {                 # absent finding hedged ("cannot exclude") in the impression
    "Pneumonia": 0.03, "Edema": 0.03, "Atelectasis": 0.02, "Enlarged Cardiomediastinum": 0.03,
    "Cardiomegaly": 0.015, "Pleural Effusion": 0.012, "Consolidation": 0.006, "Lung Opacity": 0.003,
    "Pneumothorax": 0.004, "Lung Lesion": 0.003, "Pleural Other": 0.002, "Fracture": 0.001,
}
P_AIRSPACE_PNEUMONIA_HEDGE = 0.1  # "opacity ... pneumonia cannot be excluded"
P_REPORT_STYLE = (0.83, 0.12, 0.05)  # impression present, findings only, neither (MIMIC-CXR)


# --- text assembly with spans ----------------------------------------------------------------------


@dataclass
class Span:
    """Characters [start, end) of the report text stating one finding, with its code and section."""

    label: str
    start: int
    end: int
    code: int
    section: str

    def as_dict(self) -> dict:
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


def _values(rng: np.random.Generator, case: ClinicalCase, label: str) -> dict[str, str]:
    """The words filling a template's {placeholders} for one finding of one study."""
    severity = case.severity.get(label, "mild")
    side = case.side.get(label, _choice(rng, ("right", "left")))
    zone = case.zone.get(label, "lower")
    side_word = {"midline": "", "bilateral": "bilateral"}.get(side, side)
    loc_side = "bilateral" if side == "bilateral" else side_word
    zone_words = ZONE_WORDS_BILATERAL if side == "bilateral" else ZONE_WORDS
    loc = f"{loc_side} {_choice(rng, zone_words[zone])}".strip()
    size = _choice(rng, SIZE_WORDS[severity])
    plural = side == "bilateral"
    values = {
        "side": side_word, "loc": loc, "size": size, "sev_adj": SEV_ADJ[severity],
        "sev_adv": SEV_ADV[severity], "nth": _choice(rng, NTH), "cm": str(int(rng.integers(2, 7))),
        "size_cm": f"{rng.uniform(0.8, 1.6) if severity != 'severe' else rng.uniform(3.0, 5.0):.1f}",
        "s": "s" if plural else "", "is": "are" if plural else "is",
        "a": "" if plural else ("an " if size[0] in "aeiou" else "a "),
    }
    values.update({key.capitalize(): value.capitalize() for key, value in values.items()})
    if plural:  # "There are small bilateral pleural effusions", no article
        values["a"] = values["A"] = ""
    return values


def _device_sentences(rng: np.random.Generator, case: ClinicalCase) -> list[Sentence]:
    """One sentence per device present in the study."""
    sentences = []
    for device in case.devices:
        values = _values(rng, case, "Support Devices")
        sentences.append(make_sentence(_choice(rng, DEVICE_SENTENCES[device]), "Support Devices", 1, values))
    return sentences


def finding_sentence(rng: np.random.Generator, case: ClinicalCase, label: str, code: int) -> Sentence:
    """A sentence stating ``label`` as positive (1), negated (0) or uncertain (-1)."""
    bank = {1: POSITIVE, 0: NEGATIVE, -1: UNCERTAIN}[code]
    return make_sentence(_choice(rng, bank[label]), label, code, _values(rng, case, label))


def list_negation(rng: np.random.Generator, labels: list[str]) -> Sentence:
    """One sentence negating several findings: "No focal consolidation, pleural effusion or pneumothorax." """
    short = {name: code for code, name in SHORT_NAMES.items()}
    # each marker names its label ("[[EFF:pleural effusion]]") so the spans are attributed correctly
    terms = [LIST_NEGATION_TERMS[label].replace("[[", f"[[{short[label]}:") for label in labels]
    items = terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]
    return make_sentence(_choice(rng, LIST_NEGATION_FORMS).replace("{items}", items), labels[0], 0, {})


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


# --- the report ------------------------------------------------------------------------------------


@dataclass
class Report:
    """A written report: its text, spans, and the section the labeler reads."""

    text: str
    spans: list[Span]
    labeler_section: str
    style: str  # "impression", "findings_only" or "neither"


EXAMINATIONS = {
    "PA_LAT": ("CHEST (PA AND LAT)", "Chest PA and lateral"),
    "PA": ("CHEST (PA)", "Chest PA"),
    "AP": ("CHEST (PORTABLE AP)", "Portable AP chest radiograph"),
    "AP_LAT": ("CHEST (PA AND LAT)", "Chest AP and lateral"),
}
INDICATION_HEADERS = ("INDICATION", "INDICATION", "INDICATION", "HISTORY", "REASON FOR EXAM",
                      "CLINICAL HISTORY")
IMPRESSION_HEADERS = ("IMPRESSION", "IMPRESSION", "IMPRESSION", "IMPRESSION", "IMPRESSION",
                      "FINDINGS AND IMPRESSION", "CONCLUSION", "Impression")


def indication_text(rng: np.random.Generator, case: ClinicalCase) -> str:
    """A de-identified indication that never names a finding (weakly correlated with the syndrome)."""
    if case.syndrome in SYNDROME_COMPLAINTS and rng.random() < P_SYNDROME_COMPLAINT:
        complaint = _choice(rng, SYNDROME_COMPLAINTS[case.syndrome])
    else:
        complaint = _choice(rng, INDICATION_COMPLAINTS)
    person = {"M": ("man", "M", "male"), "F": ("woman", "F", "female")}[case.sex]
    form = _choice(rng, ("___ year old {p0} with {c}", "___ y/o {p2} with {c}", "___{p1} with {c}",
                         "___ year old {p0} with {c}  // {c2}", "{c}"))
    return form.format(p0=person[0], p1=person[1], p2=person[2], c=complaint,
                       c2=_choice(rng, ("eval for acute process", "assess interval change", "?acute process")))


def _code_for_visible(rng: np.random.Generator, label: str, visibility: str) -> int:
    """Positive, or uncertain with a label-specific (higher when subtle) probability."""
    p = P_UNCERTAIN_VISIBLE.get(label, 0.08) * (2.0 if visibility == "subtle" else 1.0)
    return -1 if rng.random() < p else 1


def plan_mentions(rng: np.random.Generator, case: ClinicalCase) -> tuple[dict[str, int], dict[str, int]]:
    """Decide the code of each finding in the FINDINGS part and in the IMPRESSION part."""
    in_findings: dict[str, int] = {}
    in_impression: dict[str, int] = {}
    for label in FINDING_LABELS:
        visibility = case.visibility.get(label, "clear")
        if case.present[label] and visibility != "invisible":
            if rng.random() < P_FINDINGS_MENTION:
                in_findings[label] = _code_for_visible(rng, label, visibility)
            if rng.random() < P_IMPRESSION_MENTION.get(label, 0.88):
                in_impression[label] = in_findings.get(label, _code_for_visible(rng, label, visibility))
        else:  # absent, or present but not seen by the radiologist
            p_imp, p_find = P_NEGATE_ABSENT[label]
            if case.present[label] and rng.random() < 0.15:
                in_findings[label] = in_impression[label] = -1
                continue
            if rng.random() < P_HEDGE_ABSENT.get(label, 0.0):
                in_impression[label] = in_findings[label] = -1
            elif label != "Support Devices" and rng.random() < p_imp:
                in_impression[label] = 0
                in_findings[label] = 0
            elif rng.random() < p_find:
                in_findings[label] = 0
    # a hedge on pneumonia is common when an airspace opacity is seen
    airspace = any(in_findings.get(lab) == 1 for lab in ("Lung Opacity", "Consolidation", "Atelectasis"))
    if airspace and "Pneumonia" not in in_impression and rng.random() < P_AIRSPACE_PNEUMONIA_HEDGE:
        in_impression["Pneumonia"] = -1
    if not case.present["Support Devices"] and case.setting != "outpatient" and rng.random() < P_DEVICE_REMOVED:
        in_impression["Support Devices"] = in_findings["Support Devices"] = 0
    return in_findings, in_impression


def _sentences(rng: np.random.Generator, case: ClinicalCase, codes: dict[str, int],
               allow_list_negation: bool, summarize_devices: bool = False) -> list[Sentence]:
    """Sentences for a set of label codes, in a plausible order (devices first, negations last)."""
    sentences: list[Sentence] = []
    if codes.get("Support Devices") == 1 and case.devices:
        if summarize_devices and rng.random() < 0.4:
            sentences.append(make_sentence(_choice(rng, DEVICE_SUMMARIES), "Support Devices", 1, {}))
        else:
            sentences += _device_sentences(rng, case)
    order = [lab for lab in FINDING_LABELS if lab != "Support Devices" or codes.get(lab) != 1]
    positives = [lab for lab in order if codes.get(lab) == 1]
    uncertain = [lab for lab in order if codes.get(lab) == -1]
    negatives = [lab for lab in order if codes.get(lab) == 0]
    rng.shuffle(positives)
    for label in positives:
        if label == "Support Devices":
            continue
        sentences.append(finding_sentence(rng, case, label, 1))
    for label in uncertain:
        sentences.append(finding_sentence(rng, case, label, -1))
    listable = [lab for lab in negatives if lab in LIST_NEGATION_TERMS]
    if allow_list_negation and len(listable) >= 2 and rng.random() < 0.6:
        sentences.append(list_negation(rng, listable))
        negatives = [lab for lab in negatives if lab not in listable]
    for label in negatives:
        sentences.append(finding_sentence(rng, case, label, 0))
    return sentences


def write_report(rng: np.random.Generator, case: ClinicalCase, exam: str) -> Report:
    """The full MIMIC-style report text for one study, with spans and the labeler's section."""
    style = _choice(rng, ("impression", "findings_only", "neither"), p=P_REPORT_STYLE)
    in_findings, in_impression = plan_mentions(rng, case)
    if style == "findings_only":  # everything said is said in FINDINGS
        in_findings.update({lab: code for lab, code in in_impression.items() if lab not in in_findings})
    findings = _sentences(rng, case, in_findings, allow_list_negation=True)
    lung_positive = any(in_findings.get(lab) == 1 for lab in (
        "Lung Opacity", "Consolidation", "Atelectasis", "Edema", "Pneumonia", "Lung Lesion"))
    fillers = [s for s in FILLER_FINDINGS if not (lung_positive and "lungs" in s.lower())]
    n_fill = int(rng.integers(0, 3))
    findings += [Sentence(s, []) for s in rng.permutation(fillers)[:n_fill]]
    impression = _sentences(rng, case, in_impression, allow_list_negation=False, summarize_devices=True)
    if not any(s.mentions and s.mentions[0][1] != 0 for s in impression):
        normal = Sentence(_choice(rng, NORMAL_IMPRESSIONS), [])
        impression = [normal] + impression if rng.random() < 0.7 else impression + [normal]

    builder = ReportBuilder()
    builder.text = " " * 33 + "FINAL REPORT\n"
    exam_name, technique = EXAMINATIONS[exam]
    if style == "neither":
        builder.line(f" {exam_name.replace('(', '').replace(')', '')} ___")
    else:
        builder.line(f" EXAMINATION:  {exam_name}")
    builder.line()
    header = _choice(rng, INDICATION_HEADERS)
    builder.paragraph([Sentence(indication_text(rng, case), [])], "indication", header=f"{header}:  ")
    builder.line()
    if style != "neither":
        if rng.random() < 0.8:
            builder.paragraph([Sentence(technique + ".", [])], "technique", header="TECHNIQUE:  ")
            builder.line()
        comparison = _choice(rng, ("___.", "None.", "Chest radiograph from ___.", "Prior study of ___."))
        builder.paragraph([Sentence(comparison, [])], "comparison", header="COMPARISON:  ")
        builder.line()
    if style == "neither":
        builder.paragraph(findings, "body")
        builder.line()
        builder.paragraph(impression, "last_paragraph")
        return Report(builder.text, builder.spans, "last_paragraph", style)
    impression_header = _choice(rng, IMPRESSION_HEADERS) if style == "impression" else ""
    if impression_header != "FINDINGS AND IMPRESSION":
        _section(rng, builder, "FINDINGS", findings, "findings")
    if style == "findings_only":
        return Report(builder.text, builder.spans, "findings", style)
    if impression_header == "FINDINGS AND IMPRESSION":
        impression = findings + impression
    _section(rng, builder, impression_header, impression, "impression")
    urgent = any(in_impression.get(lab) == 1 for lab in ("Pneumothorax", "Pneumonia", "Consolidation"))
    if urgent and rng.random() < 0.4:
        builder.paragraph([Sentence("The findings were discussed with ___ by ___ on the telephone on ___ "
                                    "at ___, 2 minutes after discovery.", [])], "notification",
                          header="NOTIFICATION:  ")
    return Report(builder.text, builder.spans, "impression", style)


def _section(rng: np.random.Generator, builder: ReportBuilder, header: str, sentences: list[Sentence],
             section: str) -> None:
    """A headed section, the header inline ("IMPRESSION:  text") or on its own line."""
    if rng.random() < 0.5:
        builder.paragraph(sentences, section, header=f"{header}:  ")
    else:
        builder.line(f" {header}: ")
        builder.line()
        builder.paragraph(sentences, section)
    builder.line()


# --- labels from the text --------------------------------------------------------------------------


def derive_labels(spans: list[Span], labeler_section: str) -> dict[str, float | None]:
    """CheXpert labels from the mentions in the section the labeler reads (None = not mentioned)."""
    codes: dict[str, list[int]] = {}
    for span in spans:
        if span.section == labeler_section:
            codes.setdefault(span.label, []).append(span.code)
    labels: dict[str, float | None] = {}
    for label in FINDING_LABELS:
        found = codes.get(label, [])
        labels[label] = 1.0 if 1 in found else -1.0 if -1 in found else 0.0 if 0 in found else None
    abnormal = any(labels[lab] in (1.0, -1.0) for lab in FINDING_LABELS if lab != "Support Devices")
    labels["No Finding"] = None if abnormal else 1.0
    return {label: labels[label] for label in CHEXPERT_LABELS}
