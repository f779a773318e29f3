"""How right and how fast is the report labeler? Phantom agreement, Open-i precision/recall/F1, reports/s.

    python benchmarks/bench_labeler.py [--phantom DIR | --studies 2000] [--openi PATH [--holdout]]

(a) The phantom (built in a temporary folder unless --phantom names one): every report labelled
    with CheXpert's rule (impression, else findings, else last paragraph) and compared with the
    phantom's own chexpert CSV, all four codes (blank = blank).
(b) With --openi (a Kaggle-form Open-i CSV or its folder, with a MeSH column): precision, recall and
    F1 of the positive label (uncertain counts as not positive) against the expert MeSH coding, for
    the 8 labels MeSH maps to, and their macro mean; --holdout also splits it into the tuning part
    and the held-out part (uid modulo 5 == 0) the labeler was not developed on. Each macro F1 has a
    95% bootstrap interval (reports resampled, seeded); the errors are counted by what explains
    them (hedges the coders coded, MeSH "normal" being stricter than No Finding, the rest), and
    the macro F1 is given again against a reference with those coding conventions set aside.
Labelling speed is measured in one process (one core) on texts already in memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.labeler.mesh import SCORED_LABELS, mesh_convention, mesh_frame
from cxr_helpers.labeler.sources import ReportSource, kaggle_csvs
from cxr_helpers.labeler.tables import agreement_table, label_record, labels_table
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom import write_phantom

# MIMIC's layout, which the phantom copies
REPORTS_DIR, CHEXPERT_CSV = "mimic-cxr-reports", "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz"
REPEATS = 3  # the speed is the median of this many runs (the machine may be shared)
HOLDOUT_MODULUS = 5  # uid % 5 == 0: the held-out fifth of the development set
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 0  # the 95% interval of the macro F1: reports resampled
BOOTSTRAP_CHUNK = 250  # resamples computed at once (memory: CHUNK x reports x labels booleans)


def labelled(path: Path, sections: str) -> tuple[ReportSource, list, list]:
    """Every report under ``path`` labelled: (the source, its records, their ReportLabels)."""
    source = ReportSource(path)
    records = list(source)
    return source, records, [label_record(record, sections) for record in records]


def labels_of(source: ReportSource, records: list, results: list) -> pd.DataFrame:
    """The chexpert-form table of labelled records."""
    rows = [(record.report_id, result.labels) for record, result in zip(records, results, strict=True)]
    return labels_table(rows, source.id_column)


def phantom_check(root: Path) -> None:
    """Part (a): agreement with the phantom's own labels, per label, and the speed."""
    source, records, results = labelled(root / REPORTS_DIR, "impression")
    ours, rate, skipped = (
        labels_of(source, records, results),
        labelling_speed(records, "impression"),
        len(source.skipped),
    )
    reference = pd.read_csv(root / CHEXPERT_CSV).drop(columns="subject_id")
    table = agreement_table(ours, reference, CHEXPERT_LABELS, on="study_id")
    table["disagree"] = ((1 - table["agreement"]) * table["n"]).round().astype(int)
    print(f"\n(a) Phantom {root}: {len(ours)} reports (skipped {skipped}), --sections impression")
    print(table[["n", "agreement", "disagree"]].to_string(float_format="{:.4f}".format))
    print(f"lowest agreement: {table['agreement'].min():.4f} ({table['agreement'].idxmin()})")
    print(f"speed: {rate:.0f} reports/s (one core, labelling only, median of {REPEATS} runs)")


def openi_tables(path: Path, sections: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list, float]:
    """Our labels, the MeSH reference, the reports table, our per-report results and the reports/s."""
    source, records, results = labelled(path, sections)
    ours, rate = labels_of(source, records, results), labelling_speed(records, sections)
    reports = pd.concat([pd.read_csv(csv_path) for csv_path in kaggle_csvs(path)], ignore_index=True)
    if "MeSH" not in reports.columns:
        raise SystemExit(f"{path}: no MeSH column, so no expert reference to compare with")
    reports = reports.set_index("uid").loc[ours["uid"]].reset_index()  # the labeller's order
    return ours, mesh_frame(reports), reports, results, rate


def labelling_speed(records: list, sections: str) -> float:
    """Median reports/s of labelling ``records`` (texts already in memory), over REPEATS runs."""
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for record in records:
            label_record(record, sections)
        rates.append(len(records) / (time.perf_counter() - start))
    return statistics.median(rates)


def scores(ours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per-label precision / recall / F1 on the 8 MeSH-mapped labels."""
    return agreement_table(ours, reference, SCORED_LABELS, on="uid")[
        ["precision", "recall", "f1", "tp", "predicted", "reference"]
    ]


def uncertain_as_positive(table: pd.DataFrame) -> pd.DataFrame:
    """The same labels with -1 read as 1: how much the coders' habit of coding hedged findings explains."""
    loose = table.copy()
    loose[list(CHEXPERT_LABELS)] = loose[list(CHEXPERT_LABELS)].replace(-1.0, 1.0)
    return loose


def macro_f1(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Macro F1 over the labels with reference positives; boolean arrays (..., reports, labels)."""
    tp = (predicted & actual).sum(axis=-2)
    fp = (predicted & ~actual).sum(axis=-2)
    fn = (~predicted & actual).sum(axis=-2)
    scored = tp + fn > 0
    f1 = np.where(scored, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample without any positive: NaN
        return f1.sum(axis=-1) / scored.sum(axis=-1)


def bootstrap_interval(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of the macro F1, resampling reports (BOOTSTRAP_RESAMPLES, seeded)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    values = []
    for _ in range(0, BOOTSTRAP_RESAMPLES, BOOTSTRAP_CHUNK):
        rows = rng.integers(0, len(predicted), size=(BOOTSTRAP_CHUNK, len(predicted)))
        values.append(macro_f1(predicted[rows], actual[rows]))
    low, high = np.nanpercentile(np.concatenate(values), [2.5, 97.5])
    return float(low), float(high)


def macro_line(predicted: np.ndarray, actual: np.ndarray) -> str:
    """ "0.838 (95% CI 0.79-0.88)" for boolean (reports, labels) arrays."""
    low, high = bootstrap_interval(predicted, actual)
    return f"{float(macro_f1(predicted, actual)):.3f} (95% CI {low:.3f}-{high:.3f})"


def positive_arrays(ours: pd.DataFrame, reference: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (reports, labels) arrays of the positive code, ours and the reference, SCORED_LABELS order."""
    columns = list(SCORED_LABELS)
    return ours[columns].to_numpy() == 1.0, reference[columns].to_numpy() == 1.0


def chexpert_convention_reference(
    ours: pd.DataFrame, reference: pd.DataFrame, mesh_fields: pd.Series
) -> tuple[pd.Series, pd.DataFrame]:
    """The reference with the coding conventions set aside: (reports kept, adjusted reference).

    Hedged findings count as "not positive" on both sides where the report hedges (the labeler says
    -1); a report coded only for devices, degenerative change or technical quality is No Finding;
    reports coded "No Indexing" have no reference and are left out. This presumes the labeler's -1
    marks a real hedge in the report, so it measures the labeler against CheXpert's conventions,
    not its reading of the hedges.
    """
    conventions = mesh_fields.map(mesh_convention)
    kept = (conventions != "no indexing").to_numpy()
    adjusted = reference.copy()
    for label in SCORED_LABELS:
        if label == "No Finding":
            adjusted[label] = np.where(conventions.notna().to_numpy(), 1.0, adjusted[label].to_numpy())
        else:
            adjusted[label] = np.where(ours[label].to_numpy() == -1.0, 0.0, adjusted[label].to_numpy())
    return pd.Series(kept), adjusted


def hedge_cue(result, label: str) -> str:
    """The words of the hedge behind an uncertain label ("or", "probable", "borderline", ...)."""
    cues = [
        mention.cue.strip() for mention in result.mentions if mention.label == label and mention.code == -1
    ]
    return cues[0] if cues else "?"


def error_breakdown(
    ours: pd.DataFrame, reference: pd.DataFrame, mesh_fields: pd.Series, results: list
) -> list[str]:
    """Lines counting the errors by what explains them: coding conventions, and the rest."""
    hedged, unexplained_fn, unexplained_fp = Counter(), Counter(), Counter()
    no_finding_fp, no_finding_fn = Counter(), 0
    for row, (field, result) in enumerate(zip(mesh_fields, results, strict=True)):
        for label in SCORED_LABELS:
            mine, theirs = ours[label].iloc[row], reference[label].iloc[row]
            if (mine == 1.0) == (theirs == 1.0):
                continue
            if label == "No Finding":
                if mine == 1.0:
                    no_finding_fp[mesh_convention(field) or "other terms"] += 1
                else:
                    no_finding_fn += 1
            elif theirs == 1.0 and mine == -1.0:
                hedged[hedge_cue(result, label)] += 1
            elif theirs == 1.0:
                unexplained_fn[label] += 1
            else:
                unexplained_fp[label] += 1
    total = sum(hedged.values()) + sum(unexplained_fn.values()) + sum(unexplained_fp.values())
    total += sum(no_finding_fp.values()) + no_finding_fn
    return [
        f"errors: {total}",
        f"  findings the report hedges (labeler -1, CheXpert's rule) that the coders coded: "
        f"{sum(hedged.values())}  [{counts_text(hedged)}]",
        f"  No Finding false positives, coded only for: {counts_text(no_finding_fp)} "
        f"(CheXpert's No Finding ignores these)",
        f"  No Finding false negatives (the labeler found something the coders did not code): {no_finding_fn}",
        f"  other findings missed (blank or negated, coded): {sum(unexplained_fn.values())} "
        f"[{counts_text(unexplained_fn)}]",
        f"  other false positives (positive, not coded): {sum(unexplained_fp.values())} "
        f"[{counts_text(unexplained_fp)}]",
    ]


def counts_text(counts: Counter) -> str:
    """ "or 6, versus 3" (most common first), or "none"."""
    return ", ".join(f"{key} {value}" for key, value in counts.most_common()) or "none"


def openi_check(path: Path, sections: str, holdout: bool) -> None:
    """Part (b): P/R/F1 against Open-i's MeSH coding, optionally split into tuning / held-out."""
    ours, reference, reports, results, rate = openi_tables(path, sections)
    parts = {"all": np.ones(len(ours), dtype=bool)}
    if holdout:
        held_out = (ours["uid"].astype(int) % HOLDOUT_MODULUS == 0).to_numpy()
        parts = {"tuning (uid % 5 != 0)": ~held_out, "held-out (uid % 5 == 0)": held_out, "all": parts["all"]}
    print(
        f"\n(b) Open-i {path}: --sections {sections}; positive = 1.0 only (uncertain counts as not positive); "
        f"95% CIs: bootstrap of reports, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}"
    )
    kept, adjusted = chexpert_convention_reference(ours, reference, reports["MeSH"])
    for name, rows in parts.items():
        part_ours, part_reference = ours[rows].reset_index(drop=True), reference[rows].reset_index(drop=True)
        table = scores(part_ours, part_reference)
        loose = scores(uncertain_as_positive(part_ours), part_reference)
        print(f"\n{name}: {int(rows.sum())} reports")
        print(table.to_string(float_format="{:.3f}".format))
        scored = table["reference"] > 0
        print(
            f"macro F1 over the {int(scored.sum())} labels with reference positives: "
            f"{macro_line(*positive_arrays(part_ours, part_reference))}   (if uncertain counted as positive: "
            f"{loose.loc[scored, 'f1'].mean():.3f})"
        )
        for label in table.index[~scored]:
            print(
                f"  {label}: no reference positive here; labeler positives: {table.loc[label, 'predicted']}"
            )
        part_results = [result for result, keep in zip(results, rows, strict=True) if keep]
        for line in error_breakdown(part_ours, part_reference, reports["MeSH"][rows], part_results):
            print(line)
        convention_rows = rows & kept.to_numpy()
        convention_table = scores(ours[convention_rows], adjusted[convention_rows])
        print(
            f"against a CheXpert-convention reference ({int(convention_rows.sum())} reports: hedged findings "
            f"not positive on both sides, devices / degenerative change / technical quality alone = No Finding, "
            f"No Indexing left out): macro F1 "
            f"{macro_line(*positive_arrays(ours[convention_rows], adjusted[convention_rows]))}; per label "
            + ", ".join(
                f"{label} {value:.2f}"
                for label, value in convention_table["f1"].items()
                if convention_table.loc[label, "reference"] > 0
            )
        )
    print(f"speed: {rate:.0f} reports/s (one core, labelling only, median of {REPEATS} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", default=None, help="an existing phantom folder (default: build one)")
    parser.add_argument(
        "--studies", type=int, default=2000, help="studies of the phantom built when --phantom is absent"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--openi", default=None, help="Kaggle-form Open-i reports CSV (or its folder) with MeSH codes"
    )
    parser.add_argument(
        "--sections",
        default="findings_impression",
        choices=("impression", "findings_impression"),
        help="what is read of the Open-i reports (the phantom always uses impression)",
    )
    parser.add_argument("--holdout", action="store_true", help="also report the tuning and held-out parts")
    args = parser.parse_args()
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pandas {pd.__version__}"
    )
    if args.phantom:
        phantom_check(Path(args.phantom))
    else:
        with tempfile.TemporaryDirectory(prefix="labeler-bench-") as tmp:
            write_phantom(
                Path(tmp), n_studies=args.studies, image_size=32, seed=args.seed, workers=1, progress=False
            )
            phantom_check(Path(tmp))
    if args.openi:
        openi_check(Path(args.openi), args.sections, args.holdout)


if __name__ == "__main__":
    main()
