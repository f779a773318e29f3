"""Interpretation: latency of Grad-CAM, SHAP and the study browser on the CPU, and the faithfulness figures.

Usage (on the artifacts of a `make demo` run, i.e. notebooks 01-04 on the default phantom):
    python benchmarks/bench_explain.py [--artifacts DIR] [--repeats N] [--threads T] [--skip-faithfulness]

Part 1 times, on the CPU, with nothing cached: one Grad-CAM (one label, each CAM method), one SHAP
explanation (one label at ``settings.shap_max_evals`` evaluations, fusion and text-only model), notebook
05's probe checks one probe at a time and batched per label (phantom only), the
first browser view of a new study, browser updates for studies already explained (plain, with the
truth overlay, with two labels selected) and a filter's first use (predictions for every test study).
Part 2 runs ``faithfulness.run_faithfulness`` on ``settings.explain_studies`` test studies and prints every check
beside its random baseline (and the time it took). Nothing is written except metrics/faithfulness.json
(part 2) and the explanation cache, which goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from cxr_helpers.config import load_settings
from cxr_helpers.explain.cache import ExplanationCache
from cxr_helpers.explain.faithfulness.report import (
    grad_cam_per_label,
    grad_cam_table,
    resolution_table,
    run_faithfulness,
    shap_table,
)
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.results import notebook_times


def machine() -> str:
    """One line about where the figures were measured."""
    return (f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) | device cpu | load average {os.getloadavg()[0]:.1f}")


def timed(function, repeats: int) -> tuple[float, float]:
    """(median, min) seconds of ``function()`` over ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), min(seconds)


def latency_table(settings, repeats: int) -> pd.DataFrame:
    """Seconds per explanation and per browser update, nothing cached (fresh cache objects per call)."""
    from cxr_helpers.explain.cache import ExplanationCache
    from cxr_helpers.explain.gradcam import CAM_METHODS
    from cxr_helpers.explain.study import StudyExplainer

    explainer = StudyExplainer.from_settings(settings, cache=False)
    studies = explainer.study_ids("test")
    study = explainer.example_study()
    label = explainer.top_labels(study)[0]
    explainer.cams(study, [label])  # warm up: imports, first-call overheads
    explainer.shap_values(study, [label], max_evals=10)  # warm up: shap's one-off compilation
    rows = []

    def fresh():
        explainer.cache = ExplanationCache()

    for method in CAM_METHODS:
        for role in ("fusion", "image"):
            runs = 1 if method == "scorecam" else repeats  # one forward pass per channel: slow

            def one_cam(role=role, method=method):
                fresh()
                explainer.cams(study, [label], role, method)

            median, best = timed(one_cam, runs)
            rows.append({"what": f"Grad-CAM family: {method}, 1 label", "model": role, "median s": median, "min s": best})
    for role in ("fusion", "text"):

        def one_shap(role=role):
            fresh()
            explainer.shap_values(study, [label], role)

        median, best = timed(one_shap, repeats)
        rows.append({"what": f"SHAP, 1 label, max_evals={explainer.shap_max_evals}", "model": role,
                     "median s": median, "min s": best})
    rows += probe_check_latency(settings, explainer)
    rows += browser_latency(settings, explainer, studies, repeats)
    return pd.DataFrame(rows)


def probe_check_latency(settings, explainer) -> list[dict]:
    """Notebook 05's probe checks (phantom only), once each: one probe at a time, then batched per label (the default)."""
    from cxr_helpers.explain.faithfulness.image_checks import probe_checks
    from cxr_helpers.phantom.probes import ensure_probes
    from cxr_helpers.phantom.truth import phantom_root

    if settings.profile != "phantom":
        return []
    probes = ensure_probes(phantom_root(settings), per_label=settings.probes_per_label)
    rows = []
    for batch_size, how in ((1, "one probe at a time"), (32, "batched per label, as notebook 05")):
        began = time.perf_counter()
        probe_checks(explainer.models.get("image"), probes, settings.image_size, batch_size=batch_size)
        rows.append({"what": f"probe checks, {len(probes.table)} probes, {how}", "model": "image",
                     "median s": time.perf_counter() - began, "min s": None})
    return rows


def browser_latency(settings, explainer, studies, repeats: int) -> list[dict]:
    """The study browser: first view, cached updates (plain, truth overlay on, two labels), a filter's first use."""
    from cxr_helpers.explain.browser import ExplanationBrowser
    from cxr_helpers.explain.cache import ExplanationCache
    from cxr_helpers.explain.study_finder import StudyFinder
    from cxr_helpers.phantom.truth import load_ground_truth, phantom_root

    try:
        truth = load_ground_truth(phantom_root(settings))
    except FileNotFoundError:
        truth = None
    explainer.cache = ExplanationCache()
    began = time.perf_counter()
    browser = ExplanationBrowser(explainer, studies[:3], truth=truth, data_dir=settings.data_dir)
    rows = [{"what": "browser: first view (top-3 CAMs x 2 models + top-3 SHAP, new study)", "model": "fusion",
             "median s": time.perf_counter() - began, "min s": None}]
    browser.slider.value = 1
    browser.slider.value = 0

    def cached(what: str) -> dict:
        seconds = []
        for _ in range(max(repeats, 5)):
            browser.slider.value = 1 - browser.slider.value
            seconds.append(browser.last_update_seconds)
        return {"what": what, "model": "fusion", "median s": statistics.median(seconds), "min s": min(seconds)}

    rows.append(cached("browser: update to an explained study (cached)"))
    if truth is not None:
        browser.truth_toggle.value = True
        rows.append(cached("browser: cached update, truth overlay on"))
    browser.label_select.value = tuple(browser.labels()[:2])
    rows.append(cached("browser: cached update, two labels selected"))
    finder = StudyFinder(explainer, studies)
    began = time.perf_counter()
    found = finder.matching("fusion_wrong")
    seconds = time.perf_counter() - began
    rows.append({"what": f"browser: filter 'fusion wrong', first use ({len(studies)} test studies, {len(found)} found)",
                 "model": "fusion", "median s": seconds, "min s": None})
    return rows


def print_faithfulness(summary: dict) -> None:
    """The faithfulness tables of a summary (metrics/faithfulness.json)."""
    print(f"\n== Faithfulness: {summary['n_studies']} test studies, {summary['probes']} probes, "
          f"{summary['cam_method']} on {summary['cam_layers']}, tolerance {summary['tolerance_px']:.1f} px, "
          f"detected = logit drop > {summary['detection_drop']} ==")
    print(grad_cam_table(summary).to_string(index=False))
    for source, model in (("probes", "image"), ("test", "image"), ("test", "fusion")):
        table = grad_cam_per_label(summary, source, model)
        if not table.empty:
            print(f"\n-- {source}, {model} model, per label --")
            print(table.to_string())
    print("\n-- what each layer can resolve at best (ideal map, probes) --")
    print(resolution_table(summary).to_string(index=False))
    print("\n-- SHAP --")
    print(shap_table(summary).to_string(index=False))
    print("\n-- model randomisation (mean Spearman vs the trained model) --")
    for name, steps in summary["randomisation"].items():
        print(f"{name:>16}: " + ", ".join(f"{s['randomised_through'].split('.')[-1]} {s['spearman']:.2f}"
                                           for s in steps if s["spearman"] is not None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default=None, help="artifacts folder (default: CXR_ARTIFACTS_DIR or artifacts/<profile>)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-latency", action="store_true", help="only the faithfulness figures")
    parser.add_argument("--skip-faithfulness", action="store_true")
    parser.add_argument("--recompute", action="store_true",
                        help="run the faithfulness checks again (default: print metrics/faithfulness.json if present)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"artifacts_dir": Path(args.artifacts).resolve()} if args.artifacts else {}
    settings = load_settings(**overrides)
    print("machine:", machine())
    print(f"profile {settings.profile} (fast={settings.fast}) | image size {settings.image_size} | "
          f"shap_max_evals {settings.shap_max_evals} | explain_studies {settings.explain_studies} | {settings.artifacts_dir}")
    times = notebook_times(settings.artifacts_dir / "executed")
    if times:
        print("notebook run times of the last `make demo` (s):", {name: round(seconds) for name, seconds in times.items()},
              f"total {sum(times.values()) / 60:.1f} min")
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        if not args.skip_latency:
            print("\n== Latency (CPU, nothing cached unless said) ==")
            print(latency_table(settings, args.repeats).to_string(index=False))
        if args.skip_faithfulness:
            return
        saved = settings.metrics_dir / "faithfulness.json"
        if saved.exists() and not args.recompute:
            print_faithfulness(json.loads(saved.read_text()))
            print(f"\nread from {saved} (--recompute runs the checks again)")
            return
        explainer = StudyExplainer.from_settings(settings, cache=False)
        with tempfile.TemporaryDirectory() as folder:
            explainer.cache = ExplanationCache(Path(folder))
            began = time.perf_counter()
            result = run_faithfulness(settings, explainer, progress=False)
            print(f"\n(the checks took {time.perf_counter() - began:.0f} s)")
        print_faithfulness(result.summary)
        print(f"\nwritten: {result.path}")


if __name__ == "__main__":
    main()
