"""What the explanation browser shows, built from one study's data: the grid of maps, tables and reports.

Pure functions of arrays, tables and texts (no widgets), so each can be read and tested alone:
``grid_rows`` (one row per label: the X-ray, then each model's Grad-CAM, the true mask outlined),
``predictions_html``, ``reliance_html``, ``raw_report_html`` (the report as written, the stating
words underlined) and ``shap_panel_html`` (the cleaned text each label's SHAP values colour, on one scale).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cxr_helpers.cohort_browser import report_html
from cxr_helpers.explain.faithfulness.scores import pointing_game_hit
from cxr_helpers.explain.faithfulness.spans import TEXT_SECTIONS, span_word_indices
from cxr_helpers.explain.figures import Tile, gray_to_rgb, overlay_cam
from cxr_helpers.explain.shap_text import TextExplanation, shap_labels_html
from cxr_helpers.fusion.ablation import reliance_on_report
from cxr_helpers.labels import CHEXPERT_LABELS, label_index

CODE_NAMES = {1: "positive", 0: "negative", -1: "uncertain", -2: "not mentioned"}
ENSEMBLE_ROLE = "image_ensemble"  # the browser's column for the image ensemble (CXR_IMAGE_ENSEMBLE > 1)
# Short names: a tile's caption has 200 px ("ensemble" is the image ensemble)
ROLE_NAMES = {"fusion": "fusion", "image": "image-only", "text": "text-only", ENSEMBLE_ROLE: "ensemble"}
STATED = (1, -1)  # span codes underlined: the finding stated present or hedged (not the negated mentions)
CELL = "padding:1px 6px"


def probability_bar(p: float, colour: str = "#c0392b", width: int = 70) -> str:
    """An inline HTML bar for a probability, with its value."""
    filled = int(round(float(np.clip(p, 0, 1)) * width))
    return (f'<span style="display:inline-block;width:{width}px;height:9px;background:#eee;vertical-align:middle">'
            f'<span style="display:block;width:{filled}px;height:9px;background:{colour}"></span></span> {p:.2f}')


def truth_words(label: str, present: bool, mask: np.ndarray | None, visibility: str | None) -> str:
    """What the ground truth says of a finding on the image shown, for a row title."""
    if not present:
        return "truth: absent"
    if mask is not None:
        return "truth: present, outlined"
    if label == "No Finding":
        return "truth: present"  # nothing to outline
    return "truth: present, invisible here" if visibility == "invisible" else "truth: present, not on this image"


def grid_rows(pixels: np.ndarray, view: str, labels: Sequence[str], coded: Mapping[str, int],
              cams: Mapping[str, Mapping[str, np.ndarray]], probabilities: Mapping[str, np.ndarray],
              cams_used: Mapping[str, str], opacity: float, masks: Mapping[str, np.ndarray | None] | None = None,
              truth_notes: Mapping[str, str] | None = None) -> list[tuple[str, list[Tile]]]:
    """One (title, tiles) per label: the X-ray, then one Grad-CAM per model in ``cams`` ({role: {label: map}}).

    ``masks`` (the truth overlay on) outlines each label's true mask on every tile and says whether each
    map's peak falls inside it; ``cams_used`` names the CAM method and layer used per label.
    """
    gray = np.uint8(255 * gray_to_rgb(pixels))
    rows = []
    for label in labels:
        mask = (masks or {}).get(label)
        title = f"{label} · CSV: {CODE_NAMES.get(coded[label], coded[label])}"
        if truth_notes is not None:
            title += f" · {truth_notes.get(label, '')}"
        title += f" · {cams_used[label]}"
        tiles = [Tile(gray, f"X-ray {view}", outline=mask)]
        for role, maps in cams.items():
            cam = maps[label]
            caption = f"{ROLE_NAMES[role]} p={probabilities[role][label_index(label)]:.2f}"
            peak = None
            if np.ptp(cam) <= 1e-6:
                caption += " · flat map"  # no gradient reached this layer: the map points nowhere
            else:
                peak = tuple(int(i) for i in np.unravel_index(int(np.argmax(cam)), cam.shape))
                if mask is not None:
                    caption += " · peak " + ("in mask" if pointing_game_hit(cam, mask) else "off mask")
            tiles.append(Tile(overlay_cam(pixels, cam, opacity), caption, outline=mask, outline_alpha=0.55, peak=peak))
        rows.append((title, tiles))
    return rows


def predictions_html(coded: Mapping[str, int], probabilities: Mapping[str, np.ndarray],
                     present: Mapping[str, bool] | None = None, highlight: Sequence[str] = ()) -> str:
    """The 14 labels: CSV code, the truth (where given) and each model's probability; ``highlight`` in bold."""
    head = "".join(f"<th style='{CELL}'>p({ROLE_NAMES[r]})</th>" for r in probabilities)
    truth_head = f"<th style='{CELL}'>truly present</th>" if present is not None else ""
    rows = []
    for label in CHEXPERT_LABELS:
        j = label_index(label)
        weight = "font-weight:bold;background:#f4f6f7" if label in highlight else ""
        cells = "".join(f"<td style='{CELL}'>{probability_bar(p[j])}</td>" for p in probabilities.values())
        truth_cell = ""
        if present is not None:
            truth_cell = f"<td style='{CELL};text-align:center'>{'yes' if present[label] else ''}</td>"
        rows.append(f"<tr style='{weight}'><td style='{CELL}'>{html.escape(label)}</td>"
                    f"<td style='{CELL}'>{CODE_NAMES.get(coded[label], coded[label])}</td>{truth_cell}{cells}</tr>")
    return (f"<table style='font-size:11px;border-collapse:collapse;white-space:nowrap'><tr>"
            f"<th style='{CELL}'>label</th><th style='{CELL}'>label in CSV</th>{truth_head}{head}</tr>"
            f"{''.join(rows)}</table>")


def reliance_html(table: pd.DataFrame, labels: Sequence[str]) -> str:
    """The fusion model's modality reliance (``fusion.ablation.study_reliance``) for ``labels``, as HTML."""
    table = table.set_index("label").loc[list(labels)].reset_index()
    columns = ("p(image + report)", "p(image only)", "p(report only)")
    rows = "".join(f"<tr><td style='{CELL}'>{html.escape(r['label'])}</td>"
                   + "".join(f"<td style='{CELL};text-align:right'>{r[c]:.2f}</td>" for c in columns) + "</tr>"
                   for _, r in table.iterrows())
    share = reliance_on_report(table)
    summary = f"share of the movement due to the report: <b>{share:.0%}</b>" if np.isfinite(share) else ""
    return ("<div style='font-size:11px;margin-top:8px'><b>Modality reliance (fusion model)</b>"
            f"<table style='border-collapse:collapse;white-space:nowrap'><tr><th style='{CELL}'>label</th>"
            f"<th>both</th><th>report removed</th><th>image blanked</th></tr>{rows}</table>{summary}</div>")


def stated_spans(spans: Sequence[dict], labels: Sequence[str]) -> list[tuple[int, int]]:
    """Character ranges of the raw report that state one of ``labels`` (present or hedged)."""
    return [(int(s["start"]), int(s["end"])) for s in spans if s["label"] in labels and int(s["code"]) in STATED]


def raw_report_html(report: str, text_setting: str, underline: Sequence[tuple[int, int]] = ()) -> str:
    """The report as written: headers bold, the sections the text models read shaded, ``underline`` underlined."""
    read = TEXT_SECTIONS.get(text_setting, ())
    note = (f"<div style='font-size:11px;color:#666'>As written. Shaded: the sections the text models read "
            f"({', '.join(read)}), cleaned into the text on the right.</div>")
    return note + report_html(report, highlight=read, underline=underline)


def shap_panel_html(explanations: Sequence[TextExplanation], role: str, text_setting: str, report: str | None = None,
                    cleaned_text: str = "", spans: Sequence[dict] | None = None) -> str:
    """The cleaned text coloured by each label's SHAP values on one shared scale; with ``spans`` (the truth
    overlay on) each label's stating words underlined."""
    underline = {}
    if spans is not None and report is not None:
        sections = TEXT_SECTIONS.get(text_setting, TEXT_SECTIONS["findings_impression"])
        for e in explanations:
            words = span_word_indices(report, cleaned_text, spans, e.label, STATED, sections)
            underline[e.label] = words or set()
    header = (f"<div style='font-size:11px;color:#666'>What the <b>{ROLE_NAMES[role]}</b> model read "
              f"({html.escape(text_setting)}, cleaned), coloured by SHAP: red pushes towards the label, blue "
              "away; hover a word for its value.</div>")
    return header + shap_labels_html(list(explanations), underline)


def title_html(position: int, shown: int, total: int, row, filter_name: str) -> str:
    """The line naming the study on screen and where it sits among the studies browsed."""
    where = f"{position + 1} / {shown}" + (f" <span style='color:#666'>({filter_name}; {total} in all)</span>"
                                            if shown != total else "")
    return (f"<b>{where}</b> &nbsp; study <b>{int(row['study_id'])}</b> &nbsp; subject {int(row['subject_id'])}"
            f" &nbsp; split {html.escape(str(row['split']))}")
