"""`python -m cxr_helpers <command>`: the notebooks' work from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cxr_helpers.config import load_settings, pick_device, workbook_root
from cxr_helpers.distributed import distributed_session, is_main_process, world_size
from cxr_helpers.labeler.cli import add_label_arguments, run_label
from cxr_helpers.phantom import write_phantom
from cxr_helpers.phantom.probes import write_probes
from cxr_helpers.prepare import add_prepare_arguments, ensure_phantom, run_prepare
from cxr_helpers.results import class_figures, comparisons_table, readme_table
from cxr_helpers.training import training_precision

NOTEBOOKS = (
    "01_data_prep",
    "02_image_baseline",
    "03_text_baseline",
    "04_fusion_training",
    "05_interpretation",
)


def _settings_from_args(args: argparse.Namespace, **extra):
    """Settings from the environment, with the command line's --artifacts and friends on top."""
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "artifacts", None):
        overrides["artifacts_dir"] = Path(args.artifacts).resolve()
    if getattr(args, "epochs", None):
        overrides["epochs"] = args.epochs
    return load_settings(**overrides)


def cmd_phantom(args: argparse.Namespace) -> int:
    summary = write_phantom(
        Path(args.out), n_studies=args.studies, image_size=args.image_size, seed=args.seed, workers=args.workers,
        shortcut=args.shortcut,
    )
    print({k: v for k, v in summary.items() if not isinstance(v, dict)})
    if args.shortcut:
        print(f"Shortcut marker with {args.shortcut}: {summary['shortcut']['marker_share']} (ground_truth/markers.csv)")
    print(f"Phantom written to {args.out} (data: mimic-cxr-jpg/, reports: mimic-cxr-reports/)")
    if args.probes:
        probes = write_probes(Path(args.out) / "probes", per_label=args.probes,
                              image_size=args.probe_size or args.image_size, seed=args.seed)
        print(f"{len(probes)} probes (one finding each) written to {Path(args.out) / 'probes'}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    return run_prepare(args) or 0


def cmd_train(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    with distributed_session() as distributed:  # a process group under torchrun (docs/scale.md), a no-op otherwise
        if distributed and is_main_process():
            print(f"torchrun: {world_size()} processes, {torch.distributed.get_backend()} backend", flush=True)
        if args.model == "image":
            from cxr_helpers.image_training import forget_image_ensemble, train_image, train_image_ensemble

            train_image(settings)
            if settings.image_ensemble > 1:  # CXR_IMAGE_ENSEMBLE: more models of the recipe, other seeds
                train_image_ensemble(settings)
            elif is_main_process() and forget_image_ensemble(settings):  # rank 0 alone writes metrics
                print("dropped the image_ensemble figures of an earlier run from metrics/image.json (CXR_IMAGE_ENSEMBLE is 1)")
        elif args.model == "text":
            from cxr_helpers.text.train import train_text

            train_text(settings)
        else:
            from cxr_helpers.fusion.train import train_fusion

            train_fusion(settings)
        if is_main_process():
            print_results(settings.metrics_dir)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from cxr_helpers.explain.export import explain_study_to_files

    settings = _settings_from_args(args, cam_method=args.cam_method)
    try:
        paths = explain_study_to_files(
            settings, args.study, out_dir=Path(args.out) if args.out else None, model_name=args.model
        )
    except LookupError as error:  # an unknown study id: say where valid ones are, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def print_results(metrics_dir: Path) -> None:
    """Print the results table (test figures with 95% intervals, the paper's figures) and the discussed differences."""
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(readme_table(metrics_dir).to_string(index=False))
        differences = comparisons_table(metrics_dir)
        if not differences.empty:
            print("\nDifferences in test macro AUROC (paired bootstrap over studies):")
            print(differences.drop(columns=["question"]).to_string(index=False))


def cmd_figures(args: argparse.Namespace) -> int:
    from cxr_helpers.explain.faithfulness.report import summary_table  # the explanations pull in shap

    print(class_figures(_settings_from_args(args).artifacts_dir, summary_table))
    return 0


def run_notebook(name: str, out_dir: Path, timeout: int = 1800) -> float:
    """Execute one notebook headless (cwd = notebooks/), save the executed copy; returns seconds."""
    import nbformat
    from nbclient import NotebookClient

    source = workbook_root() / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(source, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cxr-kernel-") as sockets:
        client = NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}},
            config=_local_kernel_config(Path(sockets)),
        )
        try:
            client.execute()
        finally:
            out_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, out_dir / f"{name}.ipynb")
    return time.perf_counter() - start


def _local_kernel_config(sockets: Path):
    """Talk to the kernel over Unix sockets in ``sockets`` where there are some (no open TCP ports)."""
    from traitlets.config import Config

    config = Config()
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(sockets / "kernel")
    return config


def precision_line(settings, device: torch.device) -> str:
    """Where the demo trains and in what precision: on a CPU that sets how long it takes."""
    precision = training_precision(settings, device)
    line = f"Training on {device.type} in {precision}"
    if device.type == "cpu" and precision == "float32" and settings.mixed_precision:
        line += (" (this CPU has no bfloat16 instructions: the notebooks take about three times as long as on one"
                 " with them; on a 2-core machine about 30 minutes instead of 10; README, Run time)")
    return line


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    print(precision_line(settings, pick_device()), flush=True)
    if settings.profile == "phantom":
        ensure_phantom(settings)
    os.environ.setdefault("CXR_ARTIFACTS_DIR", str(settings.artifacts_dir))
    executed = settings.artifacts_dir / "executed"
    timings = {}
    for name in NOTEBOOKS:
        if not (workbook_root() / "notebooks" / f"{name}.ipynb").exists():
            continue
        print(f"Running notebook {name} ...", flush=True)
        timings[name] = run_notebook(name, executed)
        print(f"  done in {timings[name]:.0f} s", flush=True)
    print("\nNotebook run times (s):", {k: round(v) for k, v in timings.items()})
    print(f"\nResults (also in {settings.metrics_dir}):")
    print_results(settings.metrics_dir)
    print(f"\nExecuted notebooks: {executed}\nArtifacts: {settings.artifacts_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxr_helpers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    phantom = commands.add_parser("phantom", help="write the synthetic dataset in the MIMIC-CXR layout")
    phantom.add_argument("--out", required=True, help="folder to write mimic-cxr-jpg/, mimic-cxr-reports/, ground_truth/")
    phantom.add_argument("--studies", type=int, default=2000)
    phantom.add_argument("--image-size", type=int, default=256, help="JPEG side in pixels")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    phantom.add_argument("--probes", type=int, default=0,
                         help="also write this many probes per label to OUT/probes/ (one finding per image)")
    phantom.add_argument("--probe-size", type=int, default=None, help="probe JPEG side (default: --image-size)")
    phantom.add_argument("--shortcut", default=None, metavar="LABEL",
                         help="plant a corner marker that goes with this finding in train/validate, not in test")
    phantom.set_defaults(run=cmd_phantom)

    prepare = commands.add_parser("prepare", help="cohort table + image cache (notebook 01's work)")
    add_prepare_arguments(prepare)
    prepare.set_defaults(run=cmd_prepare)

    openi = commands.add_parser("openi", help="import the Open-i (Indiana University) chest X-rays into the MIMIC layout")
    from cxr_helpers.openi.cli import add_openi_arguments, run_openi

    add_openi_arguments(openi)
    openi.set_defaults(run=run_openi)

    train = commands.add_parser("train", help="train a model (notebooks 02-04's work)")
    train.add_argument("model", choices=("image", "text", "fusion"))
    train.add_argument("--artifacts", help="artifacts folder (default: CXR_ARTIFACTS_DIR or artifacts/<profile>)")
    train.add_argument("--epochs", type=int, default=None)
    train.set_defaults(run=cmd_train)

    explain = commands.add_parser("explain", help="one study's Grad-CAM PNG and SHAP HTML")
    explain.add_argument("--artifacts", help="artifacts folder")
    explain.add_argument("--study", type=int, required=True, help="study_id of a test study")
    explain.add_argument("--cam-method", default=None, help="gradcam, gradcam++, hirescam, eigencam, scorecam")
    explain.add_argument("--model", default=None, help="fusion checkpoint name (default: the paper's concat model)")
    explain.add_argument("--out", default=None, help="folder for the files (default: <artifacts>/explanations)")
    explain.set_defaults(run=cmd_explain)

    label = commands.add_parser("label", help="CheXpert-style labels from report text (docs/labeler.md)")
    add_label_arguments(label)
    label.set_defaults(run=run_label)

    figures = commands.add_parser("figures", help="the figures a class should see, per notebook (docs/instructor.md)")
    figures.add_argument("--artifacts", help="artifacts folder (default: CXR_ARTIFACTS_DIR or artifacts/<profile>)")
    figures.set_defaults(run=cmd_figures)

    demo = commands.add_parser("demo", help="phantom + all notebooks headless + results table")
    demo.add_argument("--artifacts", help="artifacts folder")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
