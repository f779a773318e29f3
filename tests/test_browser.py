"""The cohort browser: report HTML with sections marked, label table, and the slider updating the views."""

import numpy as np
import pandas as pd

from cxr_helpers.cohort_browser import cohort_browser, labels_html, report_html, report_text
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
    box = cohort_browser(cohort, images)
    assert "cxr-cohort-browser" in box._dom_classes
    slider, title, panes = box.children[0], box.children[1], box.children[2]
    picture, report, labels = panes.children
    assert slider.max == 2 and "study 50000000" in title.value
    first = (picture.value, report.value, labels.value)
    assert "Study-0" in report.value
    slider.value = 2
    assert "study 50000002" in title.value and "Study-2" in report.value
    assert (picture.value, report.value, labels.value) != first
    # row 2 has cache_index 0: the browser must show cache row 0 (all zeros), not cache row 2
    from io import BytesIO

    from PIL import Image

    shown = np.asarray(Image.open(BytesIO(picture.value)))
    np.testing.assert_array_equal(shown, images[0])
