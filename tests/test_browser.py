"""The cohort browser: report HTML with sections marked, label table, and the slider updating the views."""

import re
from io import BytesIO

import numpy as np
import pandas as pd
from PIL import Image

from cxr_helpers.cohort_browser import (
    ANY_CODE,
    ANY_LABEL,
    ANY_SPLIT,
    cohort_browser,
    labels_html,
    matching_rows,
    report_html,
    report_text,
)
from cxr_helpers.labels import CHEXPERT_LABELS

REPORT = "FINAL REPORT\nINDICATION: cough <2 days>\n\nFINDINGS: Small effusion.\n\nIMPRESSION: Effusion.\n"


def small_cohort(tmp_path, n=3):
    rows = []
    for i in range(n):
        path = tmp_path / f"s{i}.txt"
        path.write_text(REPORT.replace("Small", f"Study-{i}"))
        labels = {label: [1, 0, -1, -2][(i + j) % 4] for j, label in enumerate(CHEXPERT_LABELS)}
        rows.append({"subject_id": 10000000 + i, "study_id": 50000000 + i, "dicom_id": f"{i:044d}",
                     "view_position": "PA", "split": "train", "report_path": str(path), "cache_index": n - 1 - i,
                     "indication": "cough", "findings": "f", "impression": "imp", **labels})
    images = np.stack([np.full((16, 16), 50 * i, dtype=np.uint8) for i in range(n)])  # (n, 16, 16)
    return pd.DataFrame(rows), images


def test_report_html_bolds_headers_highlights_label_sections_and_escapes():
    page = report_html(REPORT)
    assert "<b>INDICATION:</b>" in page and "<b>FINDINGS:</b>" in page and "<b>IMPRESSION:</b>" in page
    assert "cough &lt;2 days&gt;" in page and "<2 days>" not in page
    assert page.count("background:") == 2  # findings and impression, not the indication
    assert "Small effusion." in page.split("<b>FINDINGS:</b>")[1].split("</span>")[0]
    fallback = report_html("FINAL REPORT\nsome text\n\nMild cardiomegaly.")
    assert 'background:#fdebd0">Mild cardiomegaly.</span>' in fallback


def test_report_html_underlines_character_ranges():
    start = REPORT.index("effusion")
    page = report_html(REPORT, underline=[(start, start + len("effusion"))])
    assert page.count("text-decoration:underline") == 1
    underlined = page.split("text-decoration:underline")[1].split('">', 1)[1].split("</span></span>")[0]
    assert re.sub("<[^>]+>", "", underlined) == "effusion"  # the underline holds the word, and only it


def test_labels_html_lists_all_labels_with_codes():
    row = pd.Series({label: code for label, code in zip(CHEXPERT_LABELS, [1, 0, -1, -2] * 4, strict=False)})
    table = labels_html(row)
    assert all(label in table for label in CHEXPERT_LABELS)
    assert table.count("<tr") == 14 and "uncertain" in table and "not mentioned" in table


def test_report_text_falls_back_to_the_cohort_sections(tmp_path):
    cohort, _ = small_cohort(tmp_path)
    assert report_text(cohort.iloc[1]).startswith("FINAL REPORT")
    rebuilt = report_text(cohort.iloc[1].copy().replace({cohort.iloc[1]["report_path"]: str(tmp_path / "gone.txt")}))
    assert rebuilt == "INDICATION: cough\n\nFINDINGS: f\n\nIMPRESSION: imp"


def test_slider_moves_image_report_and_labels_together(tmp_path):
    cohort, images = small_cohort(tmp_path)
    browser = cohort_browser(cohort, images)
    assert "cxr-cohort-browser" in browser.widget._dom_classes
    slider, title, picture, report, labels = (browser.slider, browser.title, browser.picture, browser.report,
                                              browser.labels)
    assert slider.max == 2 and "study 50000000" in title.value
    first = (picture.value, report.value, labels.value)
    assert "Study-0" in report.value
    slider.value = 2
    assert "study 50000002" in title.value and "Study-2" in report.value
    assert (picture.value, report.value, labels.value) != first
    # row 2 has cache_index 0: the browser must show cache row 0 (all zeros), not cache row 2
    shown = np.asarray(Image.open(BytesIO(picture.value)))
    np.testing.assert_array_equal(shown, images[0])


def test_matching_rows_by_label_code_and_split(tmp_path):
    cohort, _ = small_cohort(tmp_path, n=4)
    cohort["split"] = ["train", "train", "test", "validate"]
    # row i codes label j as [1, 0, -1, -2][(i + j) % 4]: Atelectasis (j=0) is 1, 0, -1, -2 down the rows
    atelectasis = CHEXPERT_LABELS[0]
    assert matching_rows(cohort, atelectasis, 1)["study_id"].tolist() == [50000000]
    assert matching_rows(cohort, atelectasis, -2)["study_id"].tolist() == [50000003]  # blank
    assert matching_rows(cohort, atelectasis, -1, "test")["study_id"].tolist() == [50000002]
    assert matching_rows(cohort, atelectasis, -1, "train").empty
    assert len(matching_rows(cohort, ANY_LABEL, -1)) == 4  # every row has some label uncertain
    assert matching_rows(cohort, split="validate")["study_id"].tolist() == [50000003]
    assert len(matching_rows(cohort, atelectasis, ANY_CODE)) == 4


def test_filters_narrow_the_slider_and_put_back_an_empty_choice(tmp_path):
    cohort, images = small_cohort(tmp_path, n=4)
    cohort["split"] = ["train", "train", "test", "validate"]
    browser = cohort_browser(cohort, images)
    browser.slider.value = 1
    browser.label_filter.value = CHEXPERT_LABELS[0]
    browser.code_filter.value = 0  # only row 1 codes Atelectasis 0: it stays on screen
    assert browser.slider.max == 0 and "study 50000001" in browser.title.value and "(of 4)" in browser.title.value
    assert "1 of 4 rows match" in browser.message.value
    browser.code_filter.value = 1  # only row 0: the browser moves to it
    assert "study 50000000" in browser.title.value and "Study-0" in browser.report.value
    browser.split_filter.value = "test"  # Atelectasis 1 in test: none, so the split filter goes back
    assert browser.split_filter.value == ANY_SPLIT and "no row matches" in browser.message.value
    assert "study 50000000" in browser.title.value
    browser.label_filter.value, browser.code_filter.value = ANY_LABEL, ANY_CODE
    assert browser.slider.max == 3


def test_study_id_box_jumps_and_explains_a_miss(tmp_path):
    cohort, images = small_cohort(tmp_path, n=4)
    browser = cohort_browser(cohort, images)
    browser.study_box.value = "50000002"
    assert "study 50000002" in browser.title.value and browser.study_box.value == ""  # cleared for the next id
    browser.study_box.value = "123"
    assert "no study 123" in browser.message.value and "study 50000002" in browser.title.value
    browser.study_box.value = "abc"
    assert "not a study id" in browser.message.value
    browser.label_filter.value, browser.code_filter.value = CHEXPERT_LABELS[0], 1  # only 50000000
    browser.study_box.value = "50000002"
    assert "does not match the filters" in browser.message.value and "study 50000000" in browser.title.value
