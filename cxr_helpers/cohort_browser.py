"""ipywidgets study browsers: the cohort (notebook 01).

``cohort_browser(cohort, images)`` shows one study at a time: its cached image, its report
with the section headers in bold and the sections the CheXpert labeler read (findings,
impression, else the last paragraph) highlighted, and its 14 coded labels. Filters (a label
coded 1/0/-1/blank, a split) narrow the rows the slider runs over; a study-id box jumps to one.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
from PIL import Image

from cxr_helpers.explain.shap_text import UNDERLINE_STYLE
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


def report_html(text: str, highlight: tuple[str, ...] = LABEL_SOURCE_SECTIONS,
                underline: Sequence[tuple[int, int]] = ()) -> str:
    """The report as HTML: headers bold, the ``highlight`` sections on a coloured background,
    the character ranges ``underline`` underlined (the words that state a finding)."""
    bold, marked = [], []  # (start, end) character ranges
    for header in find_headers(text):
        bold.append((header.start, header.content_start))
        if header.name in highlight:
            marked.append((header.content_start, header.content_end))
    if "last_paragraph" in highlight and "last_paragraph" in extract_sections(text):
        span = last_paragraph_span(text)
        if span:
            marked.append(span)
    underline = [(max(0, int(s)), min(len(text), int(e))) for s, e in underline]
    cuts = sorted({0, len(text), *[p for r in bold + marked + underline for p in r]})
    pieces = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        piece = html.escape(text[start:end])
        if any(s <= start and end <= e for s, e in bold):
            piece = f"<b>{piece}</b>"
        if any(s <= start and end <= e for s, e in marked):
            piece = f'<span style="{HIGHLIGHT}">{piece}</span>'
        if any(s <= start and end <= e for s, e in underline):
            piece = f'<span style="{UNDERLINE_STYLE}">{piece}</span>'
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


def study_title(row: pd.Series, position: int, total: int, of: int | None = None) -> str:
    """One line naming the study shown (``of``: the rows before the filters, where they differ)."""
    where = f"<b>{position + 1} / {total}</b>" + (f" (of {of})" if of is not None and of != total else "")
    return (f"{where} &nbsp; subject {row['subject_id']} &nbsp; study {row['study_id']} "
            f"&nbsp; dicom {row['dicom_id'][:17]}... &nbsp; view {row['view_position']} &nbsp; split {row['split']}")


ANY_CODE = "any"
FILTER_CODES = {"any": ANY_CODE, "1 (positive)": 1, "0 (negative)": 0, "-1 (uncertain)": -1, "blank (not mentioned)": -2}
ANY_LABEL, ANY_SPLIT = "(any label)", "(any split)"


def matching_rows(cohort: pd.DataFrame, label: str = ANY_LABEL, code: int | str = ANY_CODE,
                  split: str = ANY_SPLIT) -> pd.DataFrame:
    """The rows of ``split`` whose ``label`` (ANY_LABEL: one of the 14) is coded ``code`` (-2 = blank; ANY_CODE)."""
    chosen = pd.Series(True, index=cohort.index)
    if split != ANY_SPLIT:
        chosen &= cohort["split"] == split
    if code != ANY_CODE:
        columns = list(CHEXPERT_LABELS) if label == ANY_LABEL else [label]
        chosen &= (cohort[columns] == code).any(axis=1)
    return cohort[chosen]


class CohortBrowser:
    """A slider over cohort rows (image, report with its sections marked, 14 labels), with filters and a study-id box."""

    def __init__(self, cohort: pd.DataFrame, images: np.ndarray, image_width: int = 256):
        if cohort.empty:
            raise ValueError("the cohort is empty: nothing to browse")
        self.cohort, self.images = cohort.reset_index(drop=True), images
        self.rows = self.cohort  # the rows the slider runs over (after the filters)
        self._quiet = False
        self._filters = (ANY_LABEL, ANY_CODE, ANY_SPLIT)
        wide = {"description_width": "initial"}
        self.slider = widgets.IntSlider(value=0, min=0, max=len(self.rows) - 1, description="row",
                                        continuous_update=False, readout=False,  # the title says "3 / 17"
                                        layout=widgets.Layout(width="360px"))
        self.slider.add_class("cxr-study-slider")
        self.study_box = widgets.Text(placeholder="study id, then Enter", continuous_update=False, description="go to",
                                      style=wide, layout=widgets.Layout(width="210px"))
        self.study_box.add_class("cxr-study-id")
        splits = [ANY_SPLIT] + [s for s in ("train", "validate", "test") if s in set(self.cohort["split"])]
        self.label_filter = widgets.Dropdown(options=[ANY_LABEL, *CHEXPERT_LABELS], description="label", style=wide,
                                             layout=widgets.Layout(width="260px"))
        self.code_filter = widgets.Dropdown(options=list(FILTER_CODES.items()), value=ANY_CODE, description="coded",
                                            style=wide, layout=widgets.Layout(width="230px"))
        self.split_filter = widgets.Dropdown(options=splits, description="split", style=wide,
                                             layout=widgets.Layout(width="180px"))
        self.label_filter.add_class("cxr-filter-label")
        self.code_filter.add_class("cxr-filter")
        self.message, self.title = widgets.HTML(), widgets.HTML()
        self.picture = widgets.Image(format="png", width=image_width)
        self.report = widgets.HTML(layout=widgets.Layout(width="400px", max_height="420px", overflow="auto"))
        self.labels = widgets.HTML()
        self.slider.observe(self.show, names="value")
        self.study_box.observe(self._on_study_box, names="value")
        for control in (self.label_filter, self.code_filter, self.split_filter):
            control.observe(self._on_filter, names="value")
        note = widgets.HTML("<small>Highlighted: the sections the CheXpert labeler read to make these labels.</small>")
        wrap = widgets.Layout(flex_flow="row wrap", grid_gap="4px 12px")
        self.widget = widgets.VBox([
            widgets.HBox([self.slider, self.study_box], layout=wrap),
            widgets.HBox([self.label_filter, self.code_filter, self.split_filter], layout=wrap), self.message,
            self.title, widgets.HBox([self.picture, self.report, self.labels], layout=wrap), note,
        ])
        self.widget.add_class("cxr-cohort-browser")  # the end-to-end browser test finds the widget by this class
        self.show()

    @property
    def row(self) -> pd.Series:
        """The cohort row on screen."""
        return self.rows.iloc[self.slider.value]

    def show(self, change=None) -> None:
        """Draw the row the slider points at."""
        if self._quiet:
            return
        row = self.row
        self.title.value = study_title(row, self.slider.value, len(self.rows), len(self.cohort))
        self.picture.value = image_png(self.images[int(row["cache_index"])])  # (S, S) uint8 from the cache
        self.report.value = report_html(report_text(row))
        self.labels.value = labels_html(row)

    def _say(self, message: str, ok: bool = True) -> None:
        self.message.value = f"<span style='font-size:12px;color:{'#555' if ok else '#c0392b'}'>{message}</span>"

    def _on_filter(self, change) -> None:
        if not self._quiet:
            self.apply_filter(self.label_filter.value, self.code_filter.value, self.split_filter.value)

    def apply_filter(self, label: str = ANY_LABEL, code: int | str = ANY_CODE, split: str = ANY_SPLIT) -> bool:
        """Browse only the matching rows; put the filters back (and say so) if none matches."""
        found = matching_rows(self.cohort, label, code, split)
        if found.empty:
            self._quiet = True
            self.label_filter.value, self.code_filter.value, self.split_filter.value = self._filters
            self._quiet = False
            coded = next(name for name, value in FILTER_CODES.items() if value == code)
            self._say(f"no row matches ({html.escape(label)}, {coded}, {html.escape(split)}): filters left as they were",
                      ok=False)
            return False
        current = int(self.row["study_id"])
        self._filters, self.rows = (label, code, split), found.reset_index(drop=True)
        ids = list(self.rows["study_id"].astype(int))
        self._quiet = True
        self.slider.value, self.slider.max = 0, len(ids) - 1
        self.slider.value = ids.index(current) if current in ids else 0
        self._quiet = False
        self._say(f"{len(ids)} of {len(self.cohort)} rows match")
        self.show()
        return True

    def _on_study_box(self, change) -> None:
        text = str(change["new"]).strip()
        if text:
            self._quiet = True
            self.study_box.value = ""  # so the same id can be entered again
            self._quiet = False
            self.go_to(text)

    def go_to(self, study_id) -> bool:
        """Show the first row of ``study_id`` if the filters keep it; else say why not."""
        try:
            wanted = int(str(study_id).strip())
        except ValueError:
            self._say(f"'{html.escape(str(study_id))}' is not a study id (a number)", ok=False)
            return False
        ids = list(self.rows["study_id"].astype(int))
        if wanted in ids:
            self._say(f"study {wanted}")
            self.slider.value = ids.index(wanted)
            return True
        known = wanted in set(self.cohort["study_id"].astype(int))
        self._say(f"study {wanted} does not match the filters: set them back to any to see it" if known
                  else f"no study {wanted} in the cohort", ok=False)
        return False

    def _repr_mimebundle_(self, **kwargs):
        """Display the browser's widget when the object is the cell's result."""
        return self.widget._repr_mimebundle_(**kwargs)


def cohort_browser(cohort: pd.DataFrame, images: np.ndarray, image_width: int = 256) -> CohortBrowser:
    """A slider over cohort rows showing image, report (sections marked) and labels, with filters."""
    return CohortBrowser(cohort, images, image_width)
