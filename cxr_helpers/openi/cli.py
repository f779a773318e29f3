"""`python -m cxr_helpers openi`: the importer's command-line options and entry point."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxr_helpers.config import workbook_root
from cxr_helpers.openi.convert import DEFAULT_MAX_SIDE
from cxr_helpers.openi.importer import ImportOptions, import_openi
from cxr_helpers.openi.labeling import LABEL_SOURCES, READ_SECTIONS
from cxr_helpers.openi.records import OpenIError
from cxr_helpers.openi.summary import format_summary

DEFAULT_OUT = Path("data") / "openi"  # where the openi profile looks (relative to the workbook)
EPILOG = """forms:
  NLM:    --reports NLMCXR_reports.tgz (or its ecgen-radiology/ folder)
          --images NLMCXR_png.tgz (or its folder)
  Kaggle: --reports FOLDER with indiana_reports.csv + indiana_projections.csv (or the Kaggle zip)
          --images images_normalized/
then: CXR_PROFILE=openi python -m cxr_helpers prepare   (docs/openi.md)"""


def add_openi_arguments(parser: argparse.ArgumentParser) -> None:
    """The openi subcommand's options."""
    parser.description = (
        "Convert the Open-i Indiana University chest X-ray collection (NLM's or Kaggle's form)\n"
        "into the MIMIC-CXR-JPG + reports layout the workbook reads.\n"
        "Licence CC BY-NC-ND 4.0: keep what it writes private."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--reports",
        required=True,
        type=Path,
        help="NLMCXR_reports.tgz or its ecgen-radiology/ folder (NLM), or the folder with "
        "indiana_reports.csv and indiana_projections.csv (Kaggle)",
    )
    parser.add_argument(
        "--images",
        required=True,
        type=Path,
        help="NLMCXR_png.tgz or its folder of PNGs (NLM), or images_normalized/ (Kaggle)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"folder for mimic-cxr-jpg/, mimic-cxr-reports/ and the openi-* files (default: "
        f"{DEFAULT_OUT}/ in the workbook, where CXR_PROFILE=openi looks); never inside the download",
    )
    parser.add_argument(
        "--projections",
        type=Path,
        default=None,
        help="Kaggle's indiana_projections.csv: frontal/lateral per image, for either form "
        "(the Kaggle form finds it beside its reports)",
    )
    parser.add_argument(
        "--labels",
        choices=LABEL_SOURCES,
        default="labeler",
        help="labels of the layout's chexpert CSV: the report labeler (14 labels) or the "
        "MeSH coding (8 labels, 6 blank); both files are written anyway (default: labeler)",
    )
    parser.add_argument(
        "--label-sections",
        choices=READ_SECTIONS,
        default="findings_impression",
        help="what the labeler reads: findings + impression (default: what Open-i's coders read; "
        "agrees best with their MeSH coding) or the impression only (CheXpert's rule, as "
        "MIMIC-CXR-JPG's labels; Open-i's terse impressions then lose many findings)",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help=f"longest JPEG side in px (default {DEFAULT_MAX_SIDE}; 0 keeps the full ~2,500 px). "
        "Smaller converts and prepares faster and takes less disk; a model at 128-224 px "
        "loses nothing from 1,024 px JPEGs; keep full size only to look at fine detail",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes converting images (default: all cores; the output is the same)",
    )
    parser.add_argument(
        "--no-view-guess",
        dest="guess_views",
        action="store_false",
        help="where the projections CSV is silent, leave the view unknown instead of guessing "
        "it from the image",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the split CSV (default 42)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_openi(args: argparse.Namespace) -> int:
    """Run the import with the parsed options; print the summary and the warnings."""
    out = args.out if args.out is not None else workbook_root() / DEFAULT_OUT
    options = ImportOptions(
        reports=args.reports,
        images=args.images,
        out=out,
        projections=args.projections,
        labels=args.labels,
        label_sections=args.label_sections,
        max_side=args.max_side or None,
        workers=args.workers,
        guess_views=args.guess_views,
        seed=args.seed,
        progress=not args.no_progress,
    )
    try:
        result = import_openi(options)
    except (OpenIError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}")
        return 2
    print(format_summary(result.summary))
    for warning in result.warnings:
        print(f"\nWARNING: {warning}")
    for name, path in result.paths.items():
        print(f"wrote {name:<16} {path}")
    data, reports = result.summary["output"]["data_dir"], result.summary["output"]["reports_dir"]
    print(f"\nNext: CXR_PROFILE=openi CXR_DATA_DIR={data} CXR_REPORTS_DIR={reports}")
    print("      python -m cxr_helpers prepare")
    return 0
