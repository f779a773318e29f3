"""A CheXpert-style radiology report labeler in plain Python (see docs/labeler.md).

from cxr_helpers.labeler import label_report
result = label_report(report_text)   # CheXpert's rule: impression, else findings, else last paragraph
result.labels["Cardiomegaly"]                 # 1.0 / 0.0 / -1.0 / None (blank)
[(m.label, m.text, m.code) for m in result.mentions]   # the evidence, offsets into report_text
"""

from cxr_helpers.labeler.evidence import evidence_html
from cxr_helpers.labeler.labeler import READ_OPTIONS, Mention, ReportLabels, label_report, label_sections
from cxr_helpers.labeler.tables import agreement_table, label_folder, label_frame

__all__ = [
    "READ_OPTIONS",
    "Mention",
    "ReportLabels",
    "agreement_table",
    "evidence_html",
    "label_folder",
    "label_frame",
    "label_report",
    "label_sections",
]
