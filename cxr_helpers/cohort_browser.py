"""ipywidgets study browsers: the cohort (notebook 01).

``cohort_browser(cohort, images)`` shows one study at a time: its cached image, its report
with the section headers in bold and the sections the CheXpert labeler read (findings,
impression, else the last paragraph) highlighted, and its 14 coded labels.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
from PIL import Image

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.reports import LABEL_SOURCE_SECTIONS, extract_sections, find_headers, last_paragraph_span

CODE_STYLE = {1: ("positive", "#f5b7b1"), 0: ("negative", "#aed6f1"), -1: ("uncertain", "#fad7a0"),
              -2: ("not mentioned", "#f2f3f4")}
HIGHLIGHT = "background:#fdebd0"


def report_text(row: pd.Series) -> str:
    """The raw report of a cohort row: its file if readable, else rebuilt from the cohort's sections."""
    path = Path(str(row.get("report_path", "")))
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    parts = [f"{name.upper()}: {row[name]}" for name in ("indication", "findings", "impression") if row.get(name)]
    return "\n\n".join(parts) or "(report not available)"


def report_html(text: str, highlight: tuple[str, ...] = LABEL_SOURCE_SECTIONS) -> str:
    """The report as HTML: headers bold, the ``highlight`` sections on a coloured background."""
    bold, marked = [], []  # (start, end) character ranges
    for header in find_headers(text):
        bold.append((header.start, header.content_start))
        if header.name in highlight:
            marked.append((header.content_start, header.content_end))
    if "last_paragraph" in highlight and "last_paragraph" in extract_sections(text):
        span = last_paragraph_span(text)
        if span:
            marked.append(span)
    cuts = sorted({0, len(text), *[p for r in bold + marked for p in r]})
    pieces = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        piece = html.escape(text[start:end])
        if any(s <= start and end <= e for s, e in bold):
            piece = f"<b>{piece}</b>"
        if any(s <= start and end <= e for s, e in marked):
            piece = f'<span style="{HIGHLIGHT}">{piece}</span>'
        pieces.append(piece)
    body = "".join(pieces)
    return f'<pre style="white-space:pre-wrap;font-size:12px;line-height:1.35;margin:0">{body}</pre>'


def labels_html(row: pd.Series) -> str:
    """A small table of the 14 labels with their codes, coloured by code."""
    cells = []
    for label in CHEXPERT_LABELS:
        code = int(row[label])
        meaning, colour = CODE_STYLE.get(code, ("?", "#ffffff"))
        cells.append(f'<tr style="background:{colour}"><td style="padding:1px 6px">{html.escape(label)}</td>'
                     f'<td style="padding:1px 6px;text-align:right">{code}</td>'
                     f'<td style="padding:1px 6px">{meaning}</td></tr>')
    return f'<table style="font-size:11px;border-collapse:collapse">{"".join(cells)}</table>'


def image_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (S, S) image (for an ipywidgets.Image)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def study_title(row: pd.Series, position: int, total: int) -> str:
    """One line naming the study shown."""
    return (f"<b>{position + 1} / {total}</b> &nbsp; subject {row['subject_id']} &nbsp; study {row['study_id']} "
            f"&nbsp; dicom {row['dicom_id'][:17]}... &nbsp; view {row['view_position']} &nbsp; split {row['split']}")


def cohort_browser(cohort: pd.DataFrame, images: np.ndarray, image_width: int = 300):
    """A slider over cohort rows showing image, report (sections marked) and labels."""

    if cohort.empty:
        raise ValueError("the cohort is empty: nothing to browse")
    rows = cohort.reset_index(drop=True)
    slider = widgets.IntSlider(value=0, min=0, max=len(rows) - 1, description="row", continuous_update=False,
                               layout=widgets.Layout(width="60%"))
    title = widgets.HTML()
    picture = widgets.Image(format="png", width=image_width)
    report = widgets.HTML(layout=widgets.Layout(width="520px", max_height="420px", overflow="auto"))
    labels = widgets.HTML()

    def show(change=None) -> None:
        row = rows.iloc[slider.value]
        title.value = study_title(row, slider.value, len(rows))
        picture.value = image_png(images[int(row["cache_index"])])  # (S, S) uint8 from the cache
        report.value = report_html(report_text(row))
        labels.value = labels_html(row)

    slider.observe(show, names="value")
    show()
    note = widgets.HTML("<small>Highlighted: the sections the CheXpert labeler read to make these labels.</small>")
    slider.add_class("cxr-study-slider")
    box = widgets.VBox([slider, title, widgets.HBox([picture, report, labels]), note])
    box.add_class("cxr-cohort-browser")  # the end-to-end browser test finds the widget by this class
    return box
