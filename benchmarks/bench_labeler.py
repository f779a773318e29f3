"""How right and how fast is the report labeler? Phantom agreement, Open-i precision/recall/F1, reports/s.

    python benchmarks/bench_labeler.py [--phantom DIR | --studies 2000] [--openi PATH [--holdout]]

(a) The phantom (built in a temporary folder unless --phantom names one): every report labelled
    with CheXpert's rule (impression, else findings, else last paragraph) and compared with the
    phantom's own chexpert CSV, all four codes (blank = blank).
(b) With --openi (a Kaggle-form Open-i CSV or its folder, with a MeSH column): precision, recall and
    F1 of the positive label (uncertain counts as not positive) against the expert MeSH coding, for
    the 8 labels MeSH maps to, and their macro mean; --holdout also splits it into the tuning part
    and the held-out part (uid modulo 5 == 0) the labeler was not developed on.
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
from pathlib import Path

import pandas as pd

from cxr_helpers.labeler.mesh import SCORED_LABELS, mesh_frame
from cxr_helpers.labeler.sources import ReportSource, kaggle_csvs
from cxr_helpers.labeler.tables import agreement_table, label_record, labels_table
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.phantom import write_phantom

# MIMIC's layout, which the phantom copies
REPORTS_DIR, CHEXPERT_CSV = "mimic-cxr-reports", "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz"
REPEATS = 3  # the speed is the median of this many runs (the machine may be shared)
HOLDOUT_MODULUS = 5  # uid % 5 == 0: the held-out fifth of the development set


def timed_labels(path: Path, sections: str) -> tuple[pd.DataFrame, float, int]:
    """Label every report under ``path``: (table, median reports/s of the labelling alone, skipped files)."""
    source = ReportSource(path)
    records = list(source)
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        rows = [(record.report_id, label_record(record, sections).labels) for record in records]
        rates.append(len(rows) / (time.perf_counter() - start))
    return labels_table(rows, source.id_column), statistics.median(rates), len(source.skipped)


def phantom_check(root: Path) -> None:
    """Part (a): agreement with the phantom's own labels, per label, and the speed."""
    ours, rate, skipped = timed_labels(root / REPORTS_DIR, "impression")
    reference = pd.read_csv(root / CHEXPERT_CSV).drop(columns="subject_id")
    table = agreement_table(ours, reference, CHEXPERT_LABELS, on="study_id")
    table["disagree"] = ((1 - table["agreement"]) * table["n"]).round().astype(int)
    print(f"\n(a) Phantom {root}: {len(ours)} reports (skipped {skipped}), --sections impression")
    print(table[["n", "agreement", "disagree"]].to_string(float_format="{:.4f}".format))
    print(f"lowest agreement: {table['agreement'].min():.4f} ({table['agreement'].idxmin()})")
    print(f"speed: {rate:.0f} reports/s (one core, labelling only, median of {REPEATS} runs)")


def openi_tables(path: Path, sections: str) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Our labels and the MeSH reference for an Open-i CSV or folder, and the reports/s."""
    ours, rate, _ = timed_labels(path, sections)
    reports = pd.concat([pd.read_csv(csv_path) for csv_path in kaggle_csvs(path)], ignore_index=True)
    if "MeSH" not in reports.columns:
        raise SystemExit(f"{path}: no MeSH column, so no expert reference to compare with")
    return ours, mesh_frame(reports), rate


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


def openi_check(path: Path, sections: str, holdout: bool) -> None:
    """Part (b): P/R/F1 against Open-i's MeSH coding, optionally split into tuning / held-out."""
    ours, reference, rate = openi_tables(path, sections)
    parts = {"all": ours["uid"].notna()}
    if holdout:
        held_out = ours["uid"].astype(int) % HOLDOUT_MODULUS == 0
        parts = {"tuning (uid % 5 != 0)": ~held_out, "held-out (uid % 5 == 0)": held_out, "all": parts["all"]}
    print(
        f"\n(b) Open-i {path}: --sections {sections}; positive = 1.0 only (uncertain counts as not positive)"
    )
    for name, rows in parts.items():
        table = scores(ours[rows], reference)
        loose = scores(uncertain_as_positive(ours[rows]), reference)
        print(f"\n{name}: {int(rows.sum())} reports")
        print(table.to_string(float_format="{:.3f}".format))
        scored = table["reference"] > 0
        print(
            f"macro F1 over the {int(scored.sum())} labels with reference positives: "
            f"{table.loc[scored, 'f1'].mean():.3f}   (if uncertain counted as positive: "
            f"{loose.loc[scored, 'f1'].mean():.3f})"
        )
        for label in table.index[~scored]:
            print(
                f"  {label}: no reference positive here; labeler positives: {table.loc[label, 'predicted']}"
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
