"""The import's summary: what was read, written and skipped (by reason), views, labels; and its printout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr_helpers.openi.labeling import agreement, label_counts
from cxr_helpers.openi.layout import JPG_DIR, REPORTS_DIR
from cxr_helpers.openi.records import CITATION, LICENCE, SOURCE
from cxr_helpers.openi.views import FRONTAL_FROM, LATERAL_UNDER, guess_view

EXAMPLES_PER_REASON = 3


def _counts(values: pd.Series) -> dict[str, int]:
    """Value counts as a plain dict, blanks shown as "(blank)"."""
    return {str(k): int(v) for k, v in values.fillna("").replace("", "(blank)").value_counts().items()}


def view_summary(images: pd.DataFrame) -> dict:
    """Views by source and ViewPosition, and how the image guess compares with the projections CSV."""
    known = images[images["csv_view"].isin(["frontal", "lateral"])]
    guesses = known["view_score"].map(guess_view)
    return {
        "by_source": _counts(images["view_source"]),
        "view": _counts(images["projection"]),
        "ViewPosition": _counts(images["ViewPosition"]),
        "guess_thresholds": {"frontal_from": FRONTAL_FROM, "lateral_under": LATERAL_UNDER},
        "guess_vs_projections_csv": {
            "compared": len(known),
            "agree": int((guesses == known["csv_view"]).sum()),
            "unsure": int((guesses == "unknown").sum()),
            "disagree": int(((guesses != known["csv_view"]) & (guesses != "unknown")).sum()),
        },
    }


def view_warnings(views: dict) -> list[str]:
    """Warnings for guessed or unknown views."""
    sources, warnings = views["by_source"], []
    guessed = sources.get("image guess", 0)
    unsure = sources.get("image guess: unsure", 0)
    if guessed or unsure:
        warnings.append(
            f"VIEWS GUESSED FROM THE IMAGE for {guessed + unsure} images (no projections CSV entry): "
            f"{guessed} decided by the mediastinum-contrast rule (right on every decided held-out phantom "
            f"image; its accuracy on real X-rays is not measured), {unsure} left unknown (blank "
            "ViewPosition: the frontal filter leaves them out). For certain views pass --projections "
            "with Kaggle's indiana_projections.csv (it covers NLM's images too)."
        )
    none = sources.get("none", 0)
    if none:
        warnings.append(
            f"VIEWS UNKNOWN for {none} images (no projections CSV entry, view guess off): their ViewPosition "
            "is blank, so `prepare`'s default frontal filter leaves them out. Run prepare with --views all "
            "(it then keeps one image per study, frontal or lateral)."
        )
    return warnings


def build_summary(
    *,
    options,
    form: str,
    files_read: int,
    parsed: int,
    kept: list,
    images: pd.DataFrame,
    images_seen: int,
    skipped: pd.DataFrame,
    labels: dict[str, pd.DataFrame],
    not_round_trip: list[str],
    seconds: dict[str, float],
    workers: int,
    out: Path,
) -> tuple[dict, list[str]]:
    """The openi-import-summary.json content and the warnings to print."""
    views = view_summary(images)
    warnings = view_warnings(views)
    if not_round_trip:
        warnings.append(
            f"{len(not_round_trip)} report texts do not parse back to their sections "
            f"(e.g. {not_round_trip[0]}): please report this as a bug."
        )
    examples = {
        reason: [
            f"{r.file}" + (f" ({r.detail})" if isinstance(r.detail, str) and r.detail else "")
            for r in part.head(EXAMPLES_PER_REASON).itertuples()
        ]
        for reason, part in skipped.groupby("reason", sort=False)
    }
    table = agreement(labels["labeler"], labels["mesh"])
    return {
        "source": SOURCE,
        "licence": LICENCE,
        "citation": CITATION,
        "input": {
            "form": form,
            "reports": str(options.reports),
            "images": str(options.images),
            "projections": str(options.projections) if options.projections else None,
        },
        "output": {"out": str(out), "data_dir": str(out / JPG_DIR), "reports_dir": str(out / REPORTS_DIR)},
        "settings": {
            "labels": options.labels,
            "label_sections": options.label_sections,
            "max_side": options.max_side,
            "workers": workers,
            "guess_views": options.guess_views,
            "seed": options.seed,
            "split_fractions": list(options.split_fractions),
        },
        "reports": {"read": files_read, "parsed": parsed, "written": len(kept)},
        "images": {
            "png_files_seen": images_seen,
            "written": len(images),
            "png_modes": _counts(images["png_mode"]),
            "jpeg_longest_side": {
                "min": int(images[["Rows", "Columns"]].max(axis=1).min()),
                "max": int(images[["Rows", "Columns"]].max(axis=1).max()),
            },
        },
        "views": views,
        "skipped": {"total": len(skipped), "by_reason": _counts(skipped["reason"]), "examples": examples},
        "labels": {
            "chexpert_csv_from": options.labels,
            "labeler_reads": options.label_sections,
            "counts": {source: label_counts(t) for source, t in labels.items()},
            "agreement_with_mesh": table.astype(object).where(table.notna(), None).to_dict("records"),
        },
        "reports_not_round_tripping": not_round_trip[:20],
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "images_per_second": round(len(images) / max(seconds["images"], 1e-9), 2),
    }, warnings


def format_summary(summary: dict) -> str:
    """A readable printout of the summary."""
    r, i, v = summary["reports"], summary["images"], summary["views"]
    lines = [
        f"Open-i import ({summary['input']['form']} form) -> {summary['output']['out']}",
        f"reports: {r['read']} read, {r['written']} written (one subject and one study each)",
        f"images:  {i['png_files_seen']} PNG files seen, {i['written']} written as JPEG "
        f"(longest side {i['jpeg_longest_side']['min']}-{i['jpeg_longest_side']['max']} px; PNG modes "
        f"{i['png_modes']}), {summary['images_per_second']} images/s "
        f"with {summary['settings']['workers']} workers",
        f"views:   {v['view']} from {v['by_source']}; ViewPosition {v['ViewPosition']}",
    ]
    compared = v["guess_vs_projections_csv"]
    if compared["compared"]:
        lines.append(
            f"         the image guess agrees with the projections CSV on {compared['agree']} of "
            f"{compared['compared']} images ({compared['unsure']} unsure, {compared['disagree']} disagree)"
        )
    lines.append(f"skipped: {summary['skipped']['total']} (all in openi-skipped.csv)")
    for reason, count in summary["skipped"]["by_reason"].items():
        example = summary["skipped"]["examples"].get(reason, [""])[0]
        lines.append(f"  {count:>6}  {reason}   e.g. {example}")
    labels = summary["labels"]
    lines.append(
        f"labels:  the chexpert CSV holds the {labels['chexpert_csv_from']} labels (the labeler reads "
        f"{labels['labeler_reads']}); labeler vs MeSH on the labels MeSH codes:"
    )
    table = pd.DataFrame(labels["agreement_with_mesh"])
    if len(table):
        lines += ["  " + line for line in table.to_string(index=False).splitlines()]
    coded = set(table["label"]) if len(table) else set()
    others = {name: c["positive"] for name, c in labels["counts"]["labeler"].items() if name not in coded}
    lines.append(
        "  labeler positives on the labels MeSH does not code: "
        + ", ".join(f"{name} {count}" for name, count in others.items())
    )
    lines.append(
        f"time:    {summary['seconds']['total']} s ({summary['seconds']['images']} s for the images)"
    )
    return "\n".join(lines)
