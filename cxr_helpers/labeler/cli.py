"""`python -m cxr_helpers label`: label a folder or CSV of reports into MIMIC's chexpert CSV form."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

from cxr_helpers.labeler.evidence import evidence_record
from cxr_helpers.labeler.labeler import NOTHING_READ, READ_OPTIONS
from cxr_helpers.labeler.sources import ReportSource
from cxr_helpers.labeler.tables import label_records, labels_table
from cxr_helpers.labels import CHEXPERT_LABELS

_SHOWN_SKIPS = 10  # skipped files listed one by one; the rest are counted


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``label`` command's options."""
    parser.add_argument(
        "--reports",
        required=True,
        help="a MIMIC reports root (files/pXX/...), a folder of .txt reports, or a Kaggle Open-i "
        "CSV (uid, findings, impression) or its folder",
    )
    parser.add_argument("--out", required=True, help="labels CSV to write (id column + 14 CheXpert labels)")
    parser.add_argument(
        "--sections",
        choices=READ_OPTIONS,
        default="impression",
        help="impression: CheXpert's rule (impression, else findings, else last paragraph); "
        "findings_impression: both together (what Open-i's coders read)",
    )
    parser.add_argument(
        "--evidence", default=None, help="also write each report's mentions as JSON lines here"
    )


def run_label(args: argparse.Namespace) -> int:
    """Label every report under ``args.reports``; print a summary; 0 on success, 2 on bad input."""
    try:
        source = ReportSource(Path(args.reports))
        start = time.perf_counter()
        rows, sections_read = [], Counter()
        with open(args.evidence, "w", encoding="utf-8") if args.evidence else nullcontext() as evidence:
            for record, result in label_records(source, args.sections):
                rows.append((record.report_id, result.labels))
                sections_read[result.section] += 1
                if evidence:
                    evidence.write(evidence_record(record.report_id, record.origin, result) + "\n")
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    table = labels_table(rows, source.id_column)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print_summary(source, table, sections_read, seconds)
    print(f"Labels written to {args.out}" + (f", evidence to {args.evidence}" if args.evidence else ""))
    return 0


def print_summary(source: ReportSource, table, sections_read: Counter, seconds: float) -> None:
    """Reports read and skipped (with reasons), the section each was read from, and the codes per label."""
    print(f"{source.kind}: {source.path}")
    rate = f" ({len(table) / seconds:.0f} reports/s)" if seconds > 0 and len(table) else ""
    print(f"Reports labelled: {len(table)}{rate}; skipped: {len(source.skipped)}")
    for skipped in source.skipped[:_SHOWN_SKIPS]:
        print(f"  skipped {skipped.origin}: {skipped.reason}")
    if len(source.skipped) > _SHOWN_SKIPS:
        reasons = Counter(s.reason for s in source.skipped[_SHOWN_SKIPS:])
        print(f"  ... and {len(source.skipped) - _SHOWN_SKIPS} more: {dict(reasons)}")
    read = ", ".join(f"{name} {count}" for name, count in sections_read.most_common())
    note = f" ({NOTHING_READ} = nothing to read: No Finding 1.0, the rest blank)"
    note = note if sections_read[NOTHING_READ] else ""
    print(f"Section read: {read}{note}")
    print(f"{'label':28s} {'1.0':>7s} {'0.0':>7s} {'-1.0':>7s} {'blank':>7s}")
    for label in CHEXPERT_LABELS:
        column = table[label]
        counts = [int((column == code).sum()) for code in (1.0, 0.0, -1.0)] + [int(column.isna().sum())]
        print(f"{label:28s} " + " ".join(f"{count:7d}" for count in counts))
