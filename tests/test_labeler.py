"""The report labeler: hard cases, aggregation, No Finding, evidence offsets, sections, MeSH, CLI, phantom."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from benchmark_scripts import load_bench

from cxr_helpers import cli
from cxr_helpers.labeler import (
    Mention,
    agreement_table,
    evidence_html,
    label_folder,
    label_frame,
    label_report,
    label_sections,
)
from cxr_helpers.labeler.labeler import aggregate
from cxr_helpers.labeler.mesh import MESH_LABELS, mesh_convention, mesh_labels
from cxr_helpers.labeler.sources import ReportSource
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom import write_phantom

# MIMIC-CXR's layout, which the phantom copies
REPORTS_DIR, CHEXPERT_CSV = "mimic-cxr-reports", "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz"

MIMIC_STYLE = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PORTABLE AP)

 INDICATION:  ___ year old man with fever // ? pneumonia

 COMPARISON:  ___.

 FINDINGS:
 Right internal jugular line ends in the mid SVC.  The heart is mildly
 enlarged.  Small right pleural effusion.  No pneumothorax.

 IMPRESSION:
 Stable cardiomegaly.  Right basilar opacity may represent atelectasis or
 early pneumonia.  No pneumothorax.
"""


def codes(text, sections="impression"):
    """The non-blank labels of a one-section report (the text is the impression)."""
    return {
        k: v for k, v in label_sections({"impression": text}, read=sections).labels.items() if v is not None
    }


# --- the hard cases ------------------------------------------------------------------------------------


def test_negated_list_negates_every_item():
    labels = codes("No focal consolidation, pneumothorax, or pleural effusion.")
    assert labels == {"Consolidation": 0.0, "Pneumothorax": 0.0, "Pleural Effusion": 0.0, "No Finding": 1.0}
    assert codes("Lungs are clear without consolidation, effusion or edema.")["Edema"] == 0.0
    assert codes("Negative for pneumothorax or pleural effusion.")["Pneumothorax"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "No pneumothorax, but there is a small left pleural effusion.",
        "There is no pneumothorax; however, a small left pleural effusion persists.",
        "No pneumothorax, small left pleural effusion.",
        "No pneumothorax and there is a small left pleural effusion.",
        "No acute fracture. Small left pleural effusion.",
    ],
)
def test_negation_stops_at_but_however_and_a_new_clause(text):
    labels = codes(text)
    assert labels["Pleural Effusion"] == 1.0
    assert labels.get("Pneumothorax", labels.get("Fracture")) == 0.0


@pytest.mark.parametrize(
    "text, label",
    [
        ("Left basilar opacity may represent atelectasis.", "Atelectasis"),
        ("Pneumonia cannot be excluded.", "Pneumonia"),
        ("Cannot exclude a small apical pneumothorax.", "Pneumothorax"),
        ("Possible early pneumonia in the left lower lobe.", "Pneumonia"),
        ("Findings are concerning for infection.", "Pneumonia"),
        ("Subsegmental atelectasis versus consolidation.", "Consolidation"),
        ("Probable small right pleural effusion.", "Pleural Effusion"),
        ("A small effusion is suspected.", "Pleural Effusion"),
        ("Streaky opacity, worrisome for early pneumonia.", "Pneumonia"),
        ("Suspicious for a small right pneumothorax.", "Pneumothorax"),
        ("There is a suggestion of a small left effusion.", "Pleural Effusion"),
        ("Pneumonia is less likely.", "Pneumonia"),
        ("Blunting of the angle, possibly reflecting a small effusion.", "Pleural Effusion"),
        ("Basilar opacities likely reflect atelectasis.", "Atelectasis"),  # the phantom's own -1 sentence
        ("Opacity probably representing pneumonia.", "Pneumonia"),
        ("Atelectasis secondary to the effusion.", "Pleural Effusion"),  # CheXpert: "secondary to X"
        ("Viral infection is another consideration.", "Pneumonia"),
        ("Interstitial edema, or alternatively infection.", "Pneumonia"),
        ("A small pneumothorax is not well visualized.", "Pneumothorax"),  # CheXpert: not a negation
        ("A small pneumothorax was not appreciated on the lateral view.", "Pneumothorax"),
        ("A small pneumothorax is not clearly seen.", "Pneumothorax"),
    ],
)
def test_hedges_are_uncertain(text, label):
    assert codes(text)[label] == -1.0


@pytest.mark.parametrize(
    "text, label",
    [
        ("Retrocardiac opacity, likely atelectasis.", "Atelectasis"),
        ("Pneumonia is likely.", "Pneumonia"),
        ("Findings are most likely atelectasis.", "Atelectasis"),
        ("Bibasilar airspace disease, probably atelectasis.", "Atelectasis"),
        ("Findings are consistent with pneumonia.", "Pneumonia"),
        ("Opacity compatible with right lower lobe pneumonia.", "Pneumonia"),
        ("Findings are strongly suggestive of pneumonia.", "Pneumonia"),
        ("Hyperinflation and opacity suggest pneumonia.", "Pneumonia"),
        ("Right basilar consolidation due to pneumonia.", "Pneumonia"),
    ],
)
def test_what_chexpert_does_not_count_as_a_hedge_is_positive(text, label):
    # CheXpert's uncertainty rules list "possible", "probable", "suspicious", "concerning for",
    # "suggestion of", "may", "less likely", ... but not "likely", "probably", "consistent with",
    # "compatible with", "suggestive of" or "suggest(s)" (NegBio's "suggest" was dropped from its list).
    assert codes(text)[label] == 1.0


@pytest.mark.parametrize(
    "text, label",
    [
        ("Opacities compatible with scarring or atelectasis.", "Atelectasis"),
        ("Improved left basilar atelectasis or infiltrate.", "Atelectasis"),
        ("Left base opacity, atelectasis and/or pneumonia.", "Pneumonia"),
        ("Mild bibasilar airspace disease/atelectasis.", "Atelectasis"),
        ("Small effusion or pleural thickening.", "Pleural Effusion"),
    ],
)
def test_alternatives_joined_by_or_are_uncertain(text, label):
    # CheXpert's "XXX or YYY" rule; its loader reads "X/Y" and "and/or" as "or".
    assert codes(text)[label] == -1.0


def test_or_only_hedges_the_words_beside_it_and_never_a_negated_list():
    assert codes("No pneumothorax or pleural effusion.")["Pleural Effusion"] == 0.0
    assert codes("Atelectasis of the fifth or sixth rib level.")["Atelectasis"] == 1.0  # 3 words away
    labels = codes("No significant change in the right pneumothorax or pleural fluid.")
    assert labels["Pneumothorax"] == 1.0 and labels["Pleural Effusion"] == 1.0  # what did not change
    assert codes("Fracture of the 5th or 6th rib.")["Fracture"] == 1.0
    assert codes("Small or moderate left pleural effusion.")["Pleural Effusion"] == 1.0  # size alternatives
    assert codes("Mild or moderate cardiomegaly.")["Cardiomegaly"] == 1.0
    assert codes("Right or left apical pneumothorax.")["Pneumothorax"] == 1.0
    assert codes("One or two small nodules.")["Lung Lesion"] == 1.0
    assert codes("Status post CABG s/p sternotomy. Cardiomegaly.")["Cardiomegaly"] == 1.0


def test_a_hedge_that_takes_an_object_reaches_every_item_of_a_list():
    labels = codes("Differential diagnosis includes infection, aspiration, pulmonary edema.")
    assert labels["Pneumonia"] == -1.0 and labels["Edema"] == -1.0
    labels = codes("Findings are concerning for pneumonia, atelectasis, pulmonary edema.")
    assert labels["Pneumonia"] == labels["Atelectasis"] == labels["Edema"] == -1.0
    labels = codes("Concerning for pneumonia, small left pleural effusion.")  # a new statement
    assert labels["Pneumonia"] == -1.0 and labels["Pleural Effusion"] == 1.0


def test_a_hedging_adjective_reaches_its_own_noun_phrase_only():
    labels = codes("Possible pneumonia, mild cardiomegaly.")
    assert labels["Pneumonia"] == -1.0 and labels["Cardiomegaly"] == 1.0
    labels = codes("Possible pneumonia and atelectasis.")  # no comma: one statement
    assert labels["Pneumonia"] == -1.0 and labels["Atelectasis"] == -1.0


@pytest.mark.parametrize(
    "text, label",
    [
        ("History of pneumonia.", "Pneumonia"),
        ("Evaluate to rule out pneumothorax.", "Pneumothorax"),
        ("Drainage of the left pleural effusion.", "Pleural Effusion"),
    ],
)
def test_chexpert_negations_history_rule_out_drainage(text, label):
    assert codes(text)[label] == 0.0


def test_a_hedge_after_an_observation_only_reaches_forward():
    labels = codes("Left basilar opacity may represent atelectasis.")
    assert labels["Lung Opacity"] == 1.0 and labels["Atelectasis"] == -1.0
    assert "No Finding" not in labels
    labels = codes("Persistent retrocardiac opacity likely represents atelectasis.")
    assert labels["Lung Opacity"] == 1.0 and labels["Atelectasis"] == -1.0
    assert codes("Subtle opacity may be due to overlapping soft tissue.")["Lung Opacity"] == -1.0
    labels = codes("Basilar consolidation may represent atelectasis versus early pneumonia.")
    assert labels["Consolidation"] == 1.0 and labels["Atelectasis"] == -1.0 and labels["Pneumonia"] == -1.0


@pytest.mark.parametrize(
    "text, label, expected",
    [
        ("Mild pulmonary vascular congestion.", "Edema", -1.0),  # points at edema (CheXpert: uncertain)
        ("No pulmonary vascular congestion.", "Edema", 0.0),
        ("Mild central vascular prominence.", "Edema", -1.0),  # CheXpert: uncertain
        ("Findings of CHF.", "Edema", 1.0),  # CheXpert: heart failure is an Edema mention ...
        ("Findings of CHF.", "Cardiomegaly", -1.0),  # ... and makes Cardiomegaly uncertain
        ("Congestive heart failure.", "Cardiomegaly", -1.0),
        ("Borderline cardiomegaly.", "Cardiomegaly", 1.0),  # a mild degree of the finding
        ("Borderline heart size.", "Cardiomegaly", -1.0),  # the size itself is in doubt
        ("Hydropneumothorax on the right.", "Pneumothorax", 1.0),
        ("Hydropneumothorax on the right.", "Pleural Effusion", 1.0),
        ("Small pericardial effusion.", "Pleural Effusion", None),
        ("Calcified granuloma in the left upper lobe.", "Lung Lesion", None),
        ("Blunting of the left costophrenic angle.", "Pleural Effusion", None),
        ("Median sternotomy wires.", "Support Devices", None),
        ("Old healed left rib fractures.", "Fracture", 1.0),
    ],
)
def test_vocabulary_decisions(text, label, expected):
    result = label_sections({"impression": text})
    assert result.labels[label] == expected
    if expected != 0.0:
        assert result.labels["No Finding"] is None  # each of them is some abnormality


@pytest.mark.parametrize(
    "text",
    [
        "Stable cardiomegaly.",
        "Cardiomegaly is unchanged.",
        "Again seen is moderate cardiomegaly.",
        "No change in mild cardiomegaly.",
        "Persistent cardiomegaly without edema.",
    ],
)
def test_stable_and_unchanged_findings_stay_positive(text):
    assert codes(text)["Cardiomegaly"] == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Heart size is normal.", 0.0),
        ("Normal heart size.", 0.0),
        ("The heart is not enlarged.", 0.0),
        ("Heart size is within normal limits.", 0.0),
        ("Heart size is at the upper limits of normal.", 0.0),
        ("The cardiac silhouette is enlarged.", 1.0),
        ("Enlarged cardiac silhouette.", 1.0),
        ("The heart is moderately enlarged.", 1.0),
        ("The cardiac silhouette may be mildly enlarged.", -1.0),
        ("Borderline heart size.", -1.0),
        ("Heart size is stable.", None),
        ("The heart and lungs have not changed.", None),
    ],
)
def test_generic_heart_phrases_count_only_with_a_size_word(text, expected):
    assert label_sections({"impression": text}).labels["Cardiomegaly"] == expected


def test_cardiomediastinal_phrases_are_enlarged_cardiomediastinum_not_cardiomegaly():
    labels = codes("The cardiomediastinal silhouette is within normal limits.")
    assert labels["Enlarged Cardiomediastinum"] == 0.0 and "Cardiomegaly" not in labels
    assert codes("The mediastinum is widened.")["Enlarged Cardiomediastinum"] == 1.0
    both = codes("Heart size and mediastinal contours are normal.")
    assert both["Cardiomegaly"] == 0.0 and both["Enlarged Cardiomediastinum"] == 0.0


def test_deidentification_tokens_neither_break_negation_nor_offsets():
    for text in (
        "No XXXX pleural effusion.",
        "There are no XXXX of a pleural effusion.",
        "No ___ pleural effusion.",
    ):
        result = label_sections({"impression": text})
        assert result.labels["Pleural Effusion"] == 0.0, text
        assert all(result.text[m.start : m.end] == m.text for m in result.mentions)
    result = label_report("IMPRESSION: XXXX-year-old with a x-XXXX showing XXXX pneumothorax on ___.")
    assert result.labels["Pneumothorax"] == 1.0
    assert [m.text for m in result.mentions] == ["pneumothorax"]


def test_empty_reports_mention_no_finding():
    nothing = {**dict.fromkeys(CHEXPERT_LABELS), "No Finding": 1.0}  # CheXpert: no finding mentioned
    for result in (
        label_report(""),
        label_report("   \n"),
        label_sections({}),
        label_sections({"findings": float("nan"), "impression": None}),
        label_report("FINDINGS:\n\nIMPRESSION:\n"),
        label_sections({"impression": "XXXX XXXX."}),
    ):
        assert result.labels == nothing and result.mentions == []
        assert result.section == "none"


def test_a_report_whose_sections_are_all_empty_reads_no_header_words():
    result = label_report("COMPARISON: FINDINGS: IMPRESSION:")
    assert result.section == "none" and result.mentions == []


def test_report_without_sections_is_read_from_its_last_paragraph():
    text = "FINAL REPORT\nPA and lateral views of the chest.\n\nThe heart is enlarged.  No effusion.\n"
    result = label_report(text)
    assert result.section == "last_paragraph"
    assert result.labels["Cardiomegaly"] == 1.0 and result.labels["Pleural Effusion"] == 0.0
    assert {m.section for m in result.mentions} == {"last_paragraph"}


# --- adding up --------------------------------------------------------------------------------------------


def mention(label, code):
    return Mention(label, 0, 1, code, "x", "impression")


@pytest.mark.parametrize(
    "found, expected",
    [
        ([0, -1], -1.0),
        ([-1, 0], -1.0),
        ([0, 1], 1.0),
        ([-1, 1, 0], 1.0),
        ([0, 0], 0.0),
        ([-1], -1.0),
        ([], None),
    ],
)
def test_positive_over_uncertain_over_negative(found, expected):
    assert aggregate([mention("Edema", code) for code in found])["Edema"] == expected


def test_no_finding_ignores_support_devices_and_negations_but_not_other_abnormalities():
    assert aggregate([mention("Support Devices", 1), mention("Pneumothorax", 0)])["No Finding"] == 1.0
    assert aggregate([mention("Pneumothorax", -1)])["No Finding"] is None
    assert aggregate([mention("Other Finding", 1)])["No Finding"] is None
    assert aggregate([mention("Other Finding", 0)])["No Finding"] == 1.0
    assert codes("Emphysema. No pneumothorax.").get("No Finding") is None
    assert codes("ET tube 4 cm above the carina. No pneumothorax.")["No Finding"] == 1.0
    assert codes("No CHF. No pneumothorax.")["No Finding"] == 1.0  # a negated heart failure adds nothing


@pytest.mark.parametrize(
    "text",
    [
        "Tracheostomy tube in good position. Lungs are clear.",  # CheXpert lists these two devices
        "Pacemaker defibrillator leads in the right ventricle. Lungs are clear.",  # among its findings
        "Prominent epicardial fat pad. Lungs are clear.",  # CheXpert: any "prominen..."
        "Chronic inflammatory changes at the apices. Lungs are otherwise clear.",
        "Mild cephalization. Lungs are clear.",
        "Pulmonary venous hypertension. Lungs are clear.",
    ],
)
def test_chexpert_other_findings_keep_a_report_from_no_finding(text):
    labels = codes(text)
    assert "No Finding" not in labels
    assert labels.get("Edema") != 1.0


def test_a_size_word_that_is_also_an_other_finding_still_qualifies_the_heart():
    assert codes("The cardiac silhouette is prominent.")["Cardiomegaly"] == 1.0
    assert codes("Opacities most prominent in the lung bases.") == {"Lung Opacity": 1.0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Left pleural effusion has resolved.", 0.0),
        ("Resolved left pleural effusion.", 0.0),
        ("Left pleural effusion has not resolved.", 1.0),
        ("Partially resolved left pleural effusion.", 1.0),
        ("Left pleural effusion is not yet resolved.", 1.0),
    ],
)
def test_resolved_is_negative_only_when_fully_resolved(text, expected):
    assert codes(text)["Pleural Effusion"] == expected


def test_removed_devices_are_negative():
    assert codes("The nasogastric tube has been removed.")["Support Devices"] == 0.0
    assert codes("Interval removal of the endotracheal tube.")["Support Devices"] == 0.0
    assert codes("The nasogastric tube has not been removed.")["Support Devices"] == 1.0


# --- evidence and sections ------------------------------------------------------------------------------


def test_label_report_offsets_point_into_the_original_report():
    result = label_report(MIMIC_STYLE)
    assert result.text == MIMIC_STYLE and result.section == "impression"
    impression_start = MIMIC_STYLE.index("IMPRESSION:")
    for m in result.mentions:
        assert MIMIC_STYLE[m.start : m.end] == m.text
        assert m.start > impression_start and m.section == "impression"
    found = {(m.label, m.text.lower(), m.code) for m in result.mentions}
    assert ("Cardiomegaly", "cardiomegaly", 1) in found and ("Atelectasis", "atelectasis", -1) in found
    assert ("Pneumothorax", "pneumothorax", 0) in found


def test_the_section_rule():
    impression = label_report(MIMIC_STYLE)
    assert impression.labels["Pleural Effusion"] is None  # only said in FINDINGS
    assert impression.labels["Support Devices"] is None
    both = label_report(MIMIC_STYLE, sections="findings_impression")
    assert both.section == "findings_impression"
    assert both.labels["Pleural Effusion"] == 1.0 and both.labels["Support Devices"] == 1.0
    assert {m.section for m in both.mentions} == {"findings", "impression"}
    findings_only = label_report("FINDINGS: Small left pleural effusion.\n")
    assert findings_only.section == "findings" and findings_only.labels["Pleural Effusion"] == 1.0
    split = label_sections(
        {"findings": "Small effusion.", "impression": "No pneumothorax."}, read="impression"
    )
    assert split.section == "impression" and split.labels["Pleural Effusion"] is None
    joined = label_sections(
        {"findings": "Small effusion.", "impression": "No pneumothorax."}, read="findings_impression"
    )
    assert joined.labels["Pleural Effusion"] == 1.0 and joined.labels["Pneumothorax"] == 0.0
    assert all(joined.text[m.start : m.end] == m.text for m in joined.mentions)
    with pytest.raises(ValueError, match="findings_impression"):
        label_report("IMPRESSION: ok", sections="everything")


def test_offsets_survive_letters_that_grow_when_lower_cased():
    text = "IMPRESSION: İİ small left pleural effusion."
    result = label_report(text)
    assert [text[m.start : m.end] for m in result.mentions] == ["effusion"]


def test_evidence_html_escapes_and_colours_by_code():
    result = label_sections({"impression": "No pneumothorax <b>. Possible pneumonia. Small effusion."})
    page = evidence_html(result.text, result.mentions)
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert page.count("<mark") == 3 and "positive" in page and "uncertain" in page and "negative" in page
    assert 'title="Pneumonia: uncertain (possible)"' in page


# --- MeSH ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, expected",
    [
        ("normal", None),
        ("No Indexing", "no indexing"),
        ("Thoracic Vertebrae/degenerative/mild", "degenerative change"),
        ("Catheters, Indwelling/right;Spine/degenerative", "degenerative change + support devices"),
        ("Technical Quality of Image Unsatisfactory ", "technical quality"),
        ("Implanted Medical Device;Cardiomegaly/mild", None),  # a finding too
        ("Pulmonary Atelectasis/degenerative", None),  # a scored label is never a convention
        (float("nan"), None),
    ],
)
def test_mesh_conventions_that_chexperts_no_finding_ignores(field, expected):
    assert mesh_convention(field) == expected


def test_mesh_mapping():
    labels = mesh_labels("Cardiomegaly/borderline;Pulmonary Atelectasis/base/left")
    assert labels["Cardiomegaly"] == 1.0 and labels["Atelectasis"] == 1.0
    assert labels["No Finding"] == 0.0 and labels["Pleural Effusion"] == 0.0
    assert labels["Lung Opacity"] is None and labels["Support Devices"] is None
    assert sum(v is not None for v in labels.values()) == len(MESH_LABELS) == 8
    assert mesh_labels("Hydropneumothorax")["Pneumothorax"] == 0.0
    assert mesh_labels("Pericardial Effusion")["Pleural Effusion"] == 0.0
    assert mesh_labels("Pleural Effusion/right/small")["Pleural Effusion"] == 1.0
    assert mesh_labels("Pulmonary Edema;Pneumonia/lower lobe")["Edema"] == 1.0
    normal = mesh_labels("normal")
    assert normal["No Finding"] == 1.0 and normal["Cardiomegaly"] == 0.0
    assert mesh_labels("normal;Cardiomegaly")["No Finding"] == 0.0
    assert mesh_labels(float("nan"))["No Finding"] == 0.0


# --- the benchmark's scoring ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    """benchmarks/bench_labeler.py as a module (it is a script, not part of the package)."""
    return load_bench("bench_labeler")


def test_macro_f1_and_its_bootstrap_interval(bench):
    predicted = np.array([[1, 1], [1, 0], [0, 0], [0, 1]], dtype=bool)
    actual = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=bool)
    # label 1: tp 1, fp 1, fn 1 -> F1 0.5; label 2 has no reference positive and is left out
    assert float(bench.macro_f1(predicted, actual)) == 0.5
    low, high = bench.bootstrap_interval(predicted, actual)
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    assert (low, high) == bench.bootstrap_interval(predicted, actual)  # seeded


def test_the_chexpert_convention_reference(bench):
    ours = pd.DataFrame({"uid": [1, 2, 3], **{label: np.nan for label in CHEXPERT_LABELS}})
    ours.loc[0, "Atelectasis"] = -1.0  # hedged by the report
    ours.loc[1, "No Finding"] = 1.0
    fields = pd.Series(["Pulmonary Atelectasis", "Thoracic Vertebrae/degenerative", "No Indexing"])
    reference = pd.DataFrame([{"uid": i + 1, **mesh_labels(field)} for i, field in enumerate(fields)])
    kept, adjusted = bench.chexpert_convention_reference(ours, reference, fields)
    assert kept.tolist() == [True, True, False]
    assert adjusted.loc[0, "Atelectasis"] == 0.0 and reference.loc[0, "Atelectasis"] == 1.0
    assert adjusted.loc[1, "No Finding"] == 1.0 and reference.loc[1, "No Finding"] == 0.0


# --- tables ------------------------------------------------------------------------------------------


def test_agreement_table_counts_by_hand():
    ours = pd.DataFrame({"uid": [1, 2, 3, 4], **{label: np.nan for label in CHEXPERT_LABELS}})
    reference = ours.copy()
    ours["Edema"] = [1.0, 1.0, -1.0, np.nan]
    reference["Edema"] = [1.0, 0.0, 1.0, np.nan]
    row = agreement_table(ours, reference.iloc[::-1], labels=["Edema", "Fracture"]).loc["Edema"]
    assert row["n"] == 4 and row["agreement"] == 0.5  # rows 1 and 4 agree (blank = blank)
    assert row["precision"] == 0.5 and row["recall"] == 0.5 and row["f1"] == 0.5
    assert math.isnan(agreement_table(ours, reference, labels=["Fracture"]).loc["Fracture", "f1"])


def test_label_frame_reads_text_or_sections():
    raw = label_frame(pd.DataFrame({"study_id": [7], "text": ["IMPRESSION: Mild pulmonary edema."]}))
    assert list(raw.columns) == ["study_id", *CHEXPERT_LABELS] and raw.loc[0, "Edema"] == 1.0
    split = label_frame(
        pd.DataFrame({"uid": [3], "findings": ["No effusion."], "impression": [None]}),
        sections="findings_impression",
    )
    assert split.loc[0, "Pleural Effusion"] == 0.0 and split.loc[0, "uid"] == 3


# --- command line -----------------------------------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_cli(*args):
    return cli.main(["label", *map(str, args)])


def test_cli_on_a_mimic_reports_tree(tmp_path, capsys):
    root = tmp_path / "mimic-cxr-reports"
    write(root / "files/p10/p10000001/s50000001.txt", MIMIC_STYLE)
    write(
        root / "files/p10/p10000001/s50000002.txt", "FINDINGS: Lungs clear.\nIMPRESSION: No acute process.\n"
    )
    write(root / "files/p11/p11000002/s50000003.txt", "  \n")
    (root / "files/p11/p11000002/s50000004.txt").write_bytes(b"\xff\xfe\x00bad")
    assert (
        run_cli("--reports", root, "--out", tmp_path / "labels.csv", "--evidence", tmp_path / "spans.jsonl")
        == 0
    )
    out = capsys.readouterr().out
    assert "Reports labelled: 2" in out and "skipped: 2" in out
    assert "s50000003.txt: empty file" in out and "s50000004.txt: not UTF-8 text" in out
    table = pd.read_csv(tmp_path / "labels.csv")
    assert list(table.columns) == ["study_id", *CHEXPERT_LABELS]
    assert table["study_id"].tolist() == [50000001, 50000002]
    values = table[list(CHEXPERT_LABELS)].to_numpy().ravel()
    assert set(values[~np.isnan(values)]) <= {1.0, 0.0, -1.0} and np.isnan(values).any()
    first = table.iloc[0]
    assert (
        first["Cardiomegaly"] == 1.0 and first["Atelectasis"] == -1.0 and np.isnan(first["Pleural Effusion"])
    )
    assert table.iloc[1]["No Finding"] == 1.0
    lines = (tmp_path / "labels.csv").read_text().splitlines()
    assert (
        lines[1].startswith("50000001,-1.0,1.0,") and ",," in lines[1]
    )  # 1.0 / 0.0 / -1.0 / blank as in MIMIC
    records = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [50000001, 50000002]
    for m in records[0]["mentions"]:
        assert MIMIC_STYLE[m["start"] : m["end"]] == m["text"]


def test_cli_on_a_folder_of_txt_reports(tmp_path):
    write(tmp_path / "in/a.txt", "IMPRESSION: Large right pneumothorax.")
    write(tmp_path / "in/sub/b.txt", "Small bilateral pleural effusions.")
    assert run_cli("--reports", tmp_path / "in", "--out", tmp_path / "out/labels.csv") == 0
    table = pd.read_csv(tmp_path / "out/labels.csv").set_index("study_id")
    assert table.loc["a", "Pneumothorax"] == 1.0 and table.loc["b", "Pleural Effusion"] == 1.0


def test_cli_on_a_kaggle_csv(tmp_path, capsys):
    rows = pd.DataFrame(
        {
            "uid": [11, 12, 13],
            "MeSH": ["normal", "Cardiomegaly/mild", "normal"],
            "findings": [
                "The heart is normal in size. The lungs are clear.",
                "Mild cardiomegaly. No effusion.",
                "",
            ],
            "impression": ["No acute disease.", "Possible early pneumonia.", ""],
        }
    )
    rows.to_csv(tmp_path / "indiana_reports.csv", index=False)
    pd.DataFrame({"uid": [11], "filename": ["x.png"]}).to_csv(
        tmp_path / "indiana_projections.csv", index=False
    )
    assert (
        run_cli("--reports", tmp_path, "--out", tmp_path / "labels.csv", "--sections", "findings_impression")
        == 0
    )
    assert "none 1" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "labels.csv").set_index("uid")
    assert table.loc[11, "No Finding"] == 1.0 and table.loc[11, "Cardiomegaly"] == 0.0
    assert table.loc[12, "Cardiomegaly"] == 1.0 and table.loc[12, "Pneumonia"] == -1.0
    assert table.loc[13].drop("No Finding").isna().all() and table.loc[13, "No Finding"] == 1.0


def test_a_malformed_csv_is_a_clear_error_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "reports.csv"
    pd.DataFrame({"uid": [1], "findings": ["x"]}).to_csv(bad, index=False)
    assert run_cli("--reports", bad, "--out", tmp_path / "labels.csv") == 2
    error = capsys.readouterr().err
    assert str(bad) in error and "missing column(s) ['impression']" in error
    assert not (tmp_path / "labels.csv").exists()
    pd.DataFrame({"uid": [1, 1], "findings": ["a", "b"], "impression": ["c", "d"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="line 3: uid 1 repeats line 2"):
        list(ReportSource(bad))
    assert run_cli("--reports", tmp_path / "missing", "--out", tmp_path / "labels.csv") == 2


# --- the phantom ---------------------------------------------------------------------------------------


def test_labels_reproduce_a_small_phantoms_own_labels(tmp_path):
    write_phantom(tmp_path, n_studies=120, image_size=32, seed=3, workers=1, progress=False)
    ours = label_folder(tmp_path / REPORTS_DIR)
    reference = pd.read_csv(tmp_path / CHEXPERT_CSV).drop(columns="subject_id")
    table = agreement_table(ours, reference, on="study_id")
    assert (table["n"] == 120).all()
    assert (table["agreement"] >= 0.99).all(), table["agreement"].to_dict()


def test_the_label_command_is_listed_with_its_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["label", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("--reports", "--out", "--sections", "--evidence"))
    assert "findings_impression" in help_text
