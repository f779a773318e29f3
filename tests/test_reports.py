"""Report sections, the paper's cleaning and the two text settings."""

import pytest

from cxr_helpers.reports import clean_text, extract_sections, find_headers, last_paragraph, text_for_setting

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PORTABLE AP)

 INDICATION:  ___ year old woman with pleural effusion, s/p chest tube placement
 // chest tube interval monitoring; PLEASE DO AT ___ chest tube

 TECHNIQUE:  Portable AP chest.

 COMPARISON:  ___.

 FINDINGS:
 Unchanged position of the left pleural pigtail.

 IMPRESSION:
 Minimal increase in extent of the pre-existing pleural effusion.
"""


def test_standard_mimic_report_sections():
    sections = extract_sections(MIMIC_REPORT)
    assert sections["examination"] == "CHEST (PORTABLE AP)"
    assert sections["indication"].startswith("___ year old woman") and sections["indication"].endswith("chest tube")
    assert sections["technique"] == "Portable AP chest."
    assert sections["comparison"] == "___."
    assert sections["findings"] == "Unchanged position of the left pleural pigtail."
    assert sections["impression"] == "Minimal increase in extent of the pre-existing pleural effusion."
    assert "preamble" not in sections  # only the FINAL REPORT line came before the first header
    assert "last_paragraph" not in sections


def test_header_case_and_spacing_variants():
    text = "Findings : lungs clear.\nimpression:   no acute   process.\n  COMPARISON :none"
    sections = extract_sections(text)
    assert sections == {"findings": "lungs clear.", "impression": "no acute process.", "comparison": "none"}


def test_findings_and_impression_goes_to_impression_only():
    for header in ("FINDINGS AND IMPRESSION:", "FINDINGS/IMPRESSION:", "Findings and Impression:"):
        sections = extract_sections(f"FINAL REPORT\n{header} Small left effusion.")
        assert sections.get("impression") == "Small left effusion.", header
        assert "findings" not in sections
    assert text_for_setting(extract_sections("FINDINGS AND IMPRESSION: Small effusion."), "findings_impression") == (
        "small effusion"
    )


def test_conclusion_is_impression():
    assert extract_sections("CONCLUSION: No pneumonia.") == {"impression": "No pneumonia."}
    assert extract_sections("CONCLUSIONS: No pneumonia.")["impression"] == "No pneumonia."


def test_history_and_reason_for_exam_go_to_indication_and_history_is_kept():
    sections = extract_sections("CLINICAL HISTORY: fever.\nFINDINGS: clear.")
    assert sections["history"] == "fever." and sections["indication"] == "fever."
    sections = extract_sections("REASON FOR EXAM: cough.\nHISTORY: smoker.\nIMPRESSION: clear.")
    assert sections["indication"] == "cough. smoker." and sections["history"] == "smoker."
    assert extract_sections("REASON FOR EXAMINATION: dyspnea\nIMPRESSION: ok")["indication"] == "dyspnea"


def test_text_before_the_first_header_is_the_preamble():
    text = "FINAL REPORT\nCHEST RADIOGRAPH PERFORMED ON ___\n\nFINDINGS: clear.\nIMPRESSION: normal."
    sections = extract_sections(text)
    assert sections["preamble"] == "CHEST RADIOGRAPH PERFORMED ON ___"
    assert sections["findings"] == "clear."


def test_report_without_headers_gets_preamble_and_last_paragraph():
    text = "FINAL REPORT\nPA and lateral views of the chest.\n\nThe heart is enlarged.\nNo effusion.\n"
    sections = extract_sections(text)
    assert sections["preamble"].startswith("PA and lateral views")
    assert sections["last_paragraph"] == "The heart is enlarged. No effusion."
    assert text_for_setting(sections, "findings_impression") == "the heart is enlarged no effusion"


def test_last_paragraph_fallback_when_neither_findings_nor_impression():
    text = "INDICATION: cough.\n\nCOMPARISON: none.\n\nNOTE: Mild cardiomegaly, stable."
    sections = extract_sections(text)
    assert "findings" not in sections and "impression" not in sections
    assert sections["last_paragraph"] == "Mild cardiomegaly, stable."  # header stripped
    assert sections["note"] == "Mild cardiomegaly, stable."  # unknown capital header kept as its own section
    assert "last_paragraph" not in extract_sections("FINDINGS: clear.")


def test_bare_capital_header_without_colon_and_mixed_case_words_are_not_headers():
    sections = extract_sections("INDICATION: cough\nIMPRESSION\nNo acute process.\nNote: the patient moved.")
    assert sections["impression"] == "No acute process. Note: the patient moved."


def test_empty_section_is_missing_and_repeated_sections_join():
    sections = extract_sections("FINDINGS:\n\nIMPRESSION: one.\nADDENDUM: later.\nIMPRESSION: two.")
    assert "findings" not in sections
    assert sections["impression"] == "one. two." and sections["addendum"] == "later."


def test_find_headers_offsets_point_into_the_text():
    headers = find_headers(MIMIC_REPORT)
    assert [h.name for h in headers] == ["examination", "indication", "technique", "comparison", "findings", "impression"]
    impression = headers[-1]
    assert MIMIC_REPORT[impression.start : impression.content_start].strip() == "IMPRESSION:"
    assert MIMIC_REPORT[impression.content_start : impression.content_end].strip().startswith("Minimal increase")


def test_clean_text_is_the_papers_cleaning():
    raw = "Comparison to ___.  Unchanged  position of the LEFT pleural\npigtail; s/p chest-tube (2.5 cm). Patient's"
    assert clean_text(raw) == "comparison to unchanged position of the left pleural pigtail s p chest tube 2 5 cm patients"
    assert clean_text("___ ____") == ""
    assert clean_text("Héart! #1") == "h art 1"


def test_two_text_settings():
    sections = extract_sections(MIMIC_REPORT)
    paper = text_for_setting(sections, "findings_impression")
    assert paper == "unchanged position of the left pleural pigtail minimal increase in extent of the pre existing pleural effusion"
    indication_only = text_for_setting(sections, "indication")
    assert indication_only.startswith("year old woman with pleural effusion s p chest tube placement")
    assert "pigtail" not in indication_only
    assert "pleural effusion" in indication_only  # the paper's own indication names the finding: not label-free
    assert text_for_setting(sections, "findings_impression", clean=False).startswith("Unchanged position")
    assert text_for_setting({"findings": "x"}, "indication") == ""
    with pytest.raises(ValueError, match="findings_impression"):
        text_for_setting(sections, "impression_only")


def test_last_paragraph_of_empty_text():
    assert last_paragraph("") == "" and extract_sections("   \n") == {}


def test_headerless_findings_after_the_indication_do_not_leak_into_it():
    text = (" FINAL REPORT\n CHEST PA AND LAT ___\n \n INDICATION:  ___ with cough\n // eval\n \n"
            " Small left pleural effusion.  No pneumothorax.\n \n Possible early pneumonia.\n")
    sections = extract_sections(text)
    assert sections["indication"] == "___ with cough // eval"
    assert sections["body"] == "Small left pleural effusion. No pneumothorax. Possible early pneumonia."
    assert sections["last_paragraph"] == "Possible early pneumonia."
    assert "effusion" not in text_for_setting(sections, "indication")
    # a header on its own line followed by a blank line still takes the next paragraph
    assert extract_sections("INDICATION:\n\n cough.\n\nIMPRESSION: ok")["indication"] == "cough."
    assert "body" not in extract_sections(MIMIC_REPORT)


def test_a_report_whose_sections_are_all_empty_has_no_last_paragraph():
    for text in ("COMPARISON: FINDINGS: IMPRESSION:", "COMPARISON:\nFINDINGS:\nIMPRESSION:\n",
                 "INDICATION:\n\nCOMPARISON:  \nFINDINGS:  \n\nIMPRESSION:  \n"):
        sections = extract_sections(text)
        assert "last_paragraph" not in sections, text
        assert last_paragraph(text) == "" and text_for_setting(sections, "findings_impression") == ""
    # a real last paragraph keeps its words, without the empty headers around it
    assert last_paragraph("INDICATION: cough\n\nCOMPARISON: None.\nFINDINGS:\nIMPRESSION:") == "None."
    assert last_paragraph("NOTE: Mild cardiomegaly.\nIMPRESSION:") == "Mild cardiomegaly."


def test_clean_text_removes_openi_placeholders_but_not_words():
    cleaned = clean_text("Normal chest x-XXXX. XXXX-year-old male with XXXX XXXX.")
    assert cleaned == "normal chest x year old male with"
    assert clean_text("3rd-5XXXX ribs") == "3rd 5 ribs"
    assert clean_text("xxx Xray XXXXL") == "xxx xray xxxxl"  # lower-case runs and X inside words stay
    assert clean_text("Dr. ___ and Dr. XXXX") == "dr and dr"
