"""The radiologist: what the report says about each finding, the report text, and its labels.

For every finding the radiologist decides whether to mention it in FINDINGS and in the IMPRESSION,
and how: positive, negated ("no pneumothorax") or hedged ("cannot exclude pneumonia"); a finding
can be missed, or described only in FINDINGS. Sections vary as in MIMIC (most reports have an
IMPRESSION, some only FINDINGS, a few neither). The INDICATION never names a finding: a property
of the phantom (real indications often name the suspected finding), so on the phantom it carries
clinical context but none of the labels' words.

Labels come from the mentions with CheXpert semantics (``derive_labels``): only the section the
labeler reads counts (IMPRESSION, else FINDINGS, else the last paragraph); 1 positive, 0 negated,
-1 uncertain, blank not mentioned; No Finding is 1 when no other label but Support Devices is
positive or uncertain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom.case import FINDING_LABELS, ClinicalCase, choice
from cxr_helpers.phantom.phrases import (
    DEVICE_SENTENCES,
    DEVICE_SUMMARIES,
    EXAMINATIONS,
    FILLER_FINDINGS,
    IMPRESSION_HEADERS,
    INDICATION_COMPLAINTS,
    INDICATION_HEADERS,
    LIST_NEGATION_FORMS,
    LIST_NEGATION_TERMS,
    NEGATIVE,
    NORMAL_IMPRESSIONS,
    NTH,
    POSITIVE,
    SEV_ADJ,
    SEV_ADV,
    SHORT_NAMES,
    SIZE_WORDS,
    SYNDROME_COMPLAINTS,
    UNCERTAIN,
    ZONE_WORDS,
    ZONE_WORDS_BILATERAL,
)
from cxr_helpers.phantom.spans import ReportBuilder, Sentence, Span, make_sentence

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
P_SYNDROME_COMPLAINT = 0.35  # weak on purpose: an indication-only model learns a little, not a lot



def _values(rng: np.random.Generator, case: ClinicalCase, label: str) -> dict[str, str]:
    """The words filling a template's {placeholders} for one finding of one study."""
    severity = case.severity.get(label, "mild")
    side = case.side.get(label, choice(rng, ("right", "left")))
    zone = case.zone.get(label, "lower")
    side_word = {"midline": "", "bilateral": "bilateral"}.get(side, side)
    loc_side = "bilateral" if side == "bilateral" else side_word
    zone_words = ZONE_WORDS_BILATERAL if side == "bilateral" else ZONE_WORDS
    loc = f"{loc_side} {choice(rng, zone_words[zone])}".strip()
    size = choice(rng, SIZE_WORDS[severity])
    plural = side == "bilateral"
    values = {
        "side": side_word, "loc": loc, "size": size, "sev_adj": SEV_ADJ[severity],
        "sev_adv": SEV_ADV[severity], "nth": choice(rng, NTH), "cm": str(int(rng.integers(2, 7))),
        "size_cm": f"{rng.uniform(3.0, 5.0) if severity != 'severe' else rng.uniform(5.0, 6.5):.1f}",  # as drawn
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
        sentences.append(make_sentence(choice(rng, DEVICE_SENTENCES[device]), "Support Devices", 1, values))
    return sentences


def finding_sentence(rng: np.random.Generator, case: ClinicalCase, label: str, code: int) -> Sentence:
    """A sentence stating ``label`` as positive (1), negated (0) or uncertain (-1)."""
    bank = {1: POSITIVE, 0: NEGATIVE, -1: UNCERTAIN}[code]
    return make_sentence(choice(rng, bank[label]), label, code, _values(rng, case, label))


def list_negation(rng: np.random.Generator, labels: list[str]) -> Sentence:
    """One sentence negating several findings: "No focal consolidation, pleural effusion or pneumothorax." """
    short = {name: code for code, name in SHORT_NAMES.items()}
    # each marker names its label ("[[EFF:pleural effusion]]") so the spans are attributed correctly
    terms = [LIST_NEGATION_TERMS[label].replace("[[", f"[[{short[label]}:") for label in labels]
    items = terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]
    return make_sentence(choice(rng, LIST_NEGATION_FORMS).replace("{items}", items), labels[0], 0, {})




@dataclass
class Report:
    """A written report: its text, spans, and the section the labeler reads."""

    text: str
    spans: list[Span]
    labeler_section: str
    style: str  # "impression", "findings_only" or "neither"



def indication_text(rng: np.random.Generator, case: ClinicalCase) -> str:
    """A de-identified indication that never names a finding (weakly correlated with the syndrome)."""
    if case.syndrome in SYNDROME_COMPLAINTS and rng.random() < P_SYNDROME_COMPLAINT:
        complaint = choice(rng, SYNDROME_COMPLAINTS[case.syndrome])
    else:
        complaint = choice(rng, INDICATION_COMPLAINTS)
    person = {"M": ("man", "M", "male"), "F": ("woman", "F", "female")}[case.sex]
    form = choice(rng, ("___ year old {p0} with {c}", "___ y/o {p2} with {c}", "___{p1} with {c}",
                         "___ year old {p0} with {c}  // {c2}", "{c}"))
    return form.format(p0=person[0], p1=person[1], p2=person[2], c=complaint,
                       c2=choice(rng, ("eval for acute process", "assess interval change", "?acute process")))


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
               allow_list_negation: bool, summarise_devices: bool = False) -> list[Sentence]:
    """Sentences for a set of label codes, in a plausible order (devices first, negations last)."""
    sentences: list[Sentence] = []
    if codes.get("Support Devices") == 1 and case.devices:
        if summarise_devices and rng.random() < 0.4:
            sentences.append(make_sentence(choice(rng, DEVICE_SUMMARIES), "Support Devices", 1, {}))
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
    style = choice(rng, ("impression", "findings_only", "neither"), p=P_REPORT_STYLE)
    in_findings, in_impression = plan_mentions(rng, case)
    if style == "findings_only":  # everything said is said in FINDINGS
        in_findings.update({lab: code for lab, code in in_impression.items() if lab not in in_findings})
    findings = _sentences(rng, case, in_findings, allow_list_negation=True)
    lung_positive = any(in_findings.get(lab) == 1 for lab in (
        "Lung Opacity", "Consolidation", "Atelectasis", "Edema", "Pneumonia", "Lung Lesion"))
    fillers = [s for s in FILLER_FINDINGS if not (lung_positive and "lungs" in s.lower())]
    n_fill = int(rng.integers(0, 3))
    findings += [Sentence(s, []) for s in rng.permutation(fillers)[:n_fill]]
    impression = _sentences(rng, case, in_impression, allow_list_negation=False, summarise_devices=True)
    if not any(s.mentions and s.mentions[0][1] != 0 for s in impression):
        normal = Sentence(choice(rng, NORMAL_IMPRESSIONS), [])
        impression = [normal] + impression if rng.random() < 0.7 else impression + [normal]

    builder = ReportBuilder()
    builder.text = " " * 33 + "FINAL REPORT\n"
    exam_name, technique = EXAMINATIONS[exam]
    if style == "neither":
        builder.line(f" {exam_name.replace('(', '').replace(')', '')} ___")
    else:
        builder.line(f" EXAMINATION:  {exam_name}")
    builder.line()
    header = choice(rng, INDICATION_HEADERS)
    builder.paragraph([Sentence(indication_text(rng, case), [])], "indication", header=f"{header}:  ")
    builder.line()
    if style != "neither":
        if rng.random() < 0.8:
            builder.paragraph([Sentence(technique + ".", [])], "technique", header="TECHNIQUE:  ")
            builder.line()
        comparison = choice(rng, ("___.", "None.", "Chest radiograph from ___.", "Prior study of ___."))
        builder.paragraph([Sentence(comparison, [])], "comparison", header="COMPARISON:  ")
        builder.line()
    if style == "neither":
        builder.paragraph(findings, "body")
        builder.line()
        builder.paragraph(impression, "last_paragraph")
        return Report(builder.text, builder.spans, "last_paragraph", style)
    impression_header = choice(rng, IMPRESSION_HEADERS) if style == "impression" else ""
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
