"""The fine-tuned text model (the one notebook 05 explains): which head and learning-rate schedule, over seeds.

Reads the artifacts folder that notebook 03 (or `python -m cxr_helpers train text`) filled: cohort.csv,
the tiny BERT and its cached embeddings. Trains throw-away models with `text.finetune.run_text_finetune`
(the workbook's own code) in a temporary folder; nothing in the artifacts folder changes.

    python benchmarks/bench_text_finetune.py --artifacts artifacts/phantom [--seeds 1,2,42]
        [--configs mlp:constant:10,label_attention:constant:10,label_attention:warmup_linear:15] [--shap]

Each config is head:schedule:epochs[:peak rate] (`settings.text_finetune_head`, `text_finetune_schedule`,
`text_finetune_epochs`, `text_finetune_lr`; the settings' peak rate when left out).
With ``--shap`` (phantom only) each model is also explained as notebook 05 explains it: SHAP on
``settings.explain_studies`` test studies, top-3 words in the stating span / the span or the finding's
own words / its sentence, and the
sign under negation (``faithfulness.text_checks.shap_checks``). For each seed it prints the validation and
test macro AUROC of the checkpoint `fit` keeps (the best validation loss), then the mean per
config. Choose on validation: the test split (about 100 studies) is for the final figure only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_helpers.config import load_settings
from cxr_helpers.explain.faithfulness.report import training_finding_words
from cxr_helpers.explain.faithfulness.text_checks import shap_checks
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.metrics import macro_auroc
from cxr_helpers.phantom.truth import load_ground_truth, phantom_root
from cxr_helpers.prepare import load_cohort
from cxr_helpers.text.embeddings import cached_embeddings
from cxr_helpers.text.encoder import quiet_transformers
from cxr_helpers.text.finetune import run_text_finetune
from cxr_helpers.text.tiny_bert import text_dir
from cxr_helpers.training import predict

SETTING = "findings_impression"
DEFAULT_CONFIGS = "mlp:constant:10,label_attention:constant:10,label_attention:warmup_linear:10,label_attention:warmup_linear:15"


def parse_config(text: str) -> dict:
    """"label_attention:warmup_linear:15[:5e-4]" -> the settings it names (the peak rate only when given)."""
    head, schedule, epochs, *rate = text.split(":")
    if len(rate) > 1:
        raise ValueError(f"a config is head:schedule:epochs[:peak rate], got {text!r}")
    config = {"text_finetune_head": head, "text_finetune_schedule": schedule, "text_finetune_epochs": int(epochs)}
    return {**config, "text_finetune_lr": float(rate[0])} if rate else config


def scratch_folder(artifacts: Path) -> Path:
    """A temporary artifacts folder that shares everything but the checkpoints, metrics and explanations."""
    folder = Path(tempfile.mkdtemp(prefix="bench-text-finetune-"))
    for entry in artifacts.iterdir():
        if entry.name not in ("checkpoints", "metrics", "explanations"):
            (folder / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return folder


def shap_scores(settings, truth) -> dict:
    """Notebook 05's SHAP checks on the text model just trained into ``settings.artifacts_dir``."""
    explainer = StudyExplainer.from_settings(settings, roles=("text",), cache=False)
    studies = explainer.study_ids("test")[: settings.explain_studies]
    top_k, mentions = shap_checks(explainer, truth, studies, "text", k=3,
                                  own_words=training_finding_words(explainer, truth))
    return {"span": top_k["hit"].mean(), "span or own words": top_k["hit_own"].mean(),
            "sentence": top_k["hit_sentence"].mean(), "n span": len(top_k),
            "sign": mentions["sign_agrees"].mean(), "n sign": len(mentions)}


def one_run(settings, cohort, features: np.ndarray, truth=None) -> dict:
    """Train one fine-tuned model from scratch; its validation and test macro AUROC, seconds, SHAP checks (with truth)."""
    began = time.perf_counter()
    train_rows = np.flatnonzero(cohort["split"].to_numpy() == "train")
    run = run_text_finetune(settings, cohort, SETTING, features[train_rows], progress=False, resume=False)
    scores = {}
    for split in ("validate", "test"):
        logits, targets, _ = predict(run["model"], run["loaders"][split])
        scores[split] = macro_auroc(logits, targets, settings.uncertainty_policy)
    row = {"validate": scores["validate"], "test": scores["test"], "best epoch": run["history"].best_epoch,
           "seconds": time.perf_counter() - began}
    return {**row, **(shap_scores(settings, truth) if truth is not None else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default=None, help="artifacts folder (default: the profile's)")
    parser.add_argument("--seeds", default="1,2,42")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--shap", action="store_true", help="also SHAP's span and negation checks (phantom only)")
    args = parser.parse_args()
    quiet_transformers()
    base = load_settings(**({"artifacts_dir": Path(args.artifacts)} if args.artifacts else {}))
    cohort = load_cohort(base.artifacts_dir)
    if not (text_dir(base) / "tiny-bert").exists() and base.text_model == "tiny-bert":
        raise SystemExit(f"no tiny BERT in {text_dir(base)}: run notebook 03 (or `python -m cxr_helpers train text`) first")
    features = cached_embeddings(base, cohort, SETTING, False, None)
    truth = load_ground_truth(phantom_root(base)) if args.shap else None
    folder = scratch_folder(base.artifacts_dir)
    rows = []
    try:
        for config in args.configs.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                settings = dataclasses.replace(base, artifacts_dir=folder, seed=seed, **parse_config(config))
                rows.append({"config": config, "seed": seed, **one_run(settings, cohort, features, truth)})
                row = rows[-1]
                shap = (f"  SHAP top-3 in span {row['span']:.3f} (n={row['n span']}), span or own words"
                        f" {row['span or own words']:.3f}, sentence {row['sentence']:.3f},"
                        f" negation sign {row['sign']:.3f} (n={row['n sign']})" if truth is not None else "")
                print(f"{config:<36} seed {seed:>3}: validation {row['validate']:.3f}  test {row['test']:.3f}"
                      f"  (best epoch {row['best epoch']}, {row['seconds']:.0f} s){shap}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table = pd.DataFrame(rows)
    columns = ["validate", "test", "seconds"] + (["span", "span or own words", "sentence", "sign"]
                                                 if truth is not None else [])
    summary = table.groupby("config", sort=False)[columns].agg(["mean", "min", "max"])
    print(f"\nmacro AUROC of the kept checkpoint, {SETTING}, {len(args.seeds.split(','))} seeds"
          f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
