"""How the image model's training recipe moves its AUROC against the phantom's truth, over seeds.

    python benchmarks/bench_image_recipe.py --artifacts artifacts/phantom \
        --runs 8:constant:42 8:constant:1 8:warmup_linear:42 8:warmup_linear:1 6:warmup_linear:42

Each run is ``EPOCHS:SCHEDULE:SEED[:fp32]``: the phantom profile's image model (notebook 02's
``train_image`` path: seed, then build, then ``fit``) trained on the artifacts' cohort and image
cache with that many epochs, learning-rate schedule (``training.LR_SCHEDULES``) and seed, under the
profile's mixed precision unless ``:fp32`` is added. It prints, per run, the epoch ``fit`` kept (lowest
validation loss), the validation and test macro AUROC against the phantom's truth, and the training
seconds. With ``--maps`` it also scores the run's maps as notebook 05 does (``image_checks``: the
probes and all test studies, localised findings, detected share and the pointing game of the map
and of the map minus the label's baseline), which needs the image model of ``make demo`` in the
artifacts (its explainer is reused, with this run's weights). Checkpoints go to a temporary folder:
the artifacts are only read. Needs a prepared phantom (``make demo``, or notebook 01) and its ground truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from bench_test_studies import share  # a sibling script: benchmarks/ is on the path when run as a script

from cxr_helpers.config import load_settings, seed_everything
from cxr_helpers.datasets import load_split_datasets
from cxr_helpers.evaluation import truth_figures, truth_table
from cxr_helpers.image_model import build_image_model
from cxr_helpers.image_training import image_loaders
from cxr_helpers.training import cpu_computes_bfloat16, fit, predict


def parse_run(text: str) -> dict:
    """"8:warmup_linear:42" or "8:constant:1:fp32" -> {"epochs", "lr_schedule", "seed", "mixed_precision"}."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "fp32"):
        raise SystemExit(f"a run is EPOCHS:SCHEDULE:SEED[:fp32], got {text!r}")
    try:
        epochs, seed = int(parts[0]), int(parts[2])
    except ValueError:
        raise SystemExit(f"a run is EPOCHS:SCHEDULE:SEED[:fp32] with whole numbers, got {text!r}") from None
    return {"epochs": epochs, "lr_schedule": parts[1], "seed": seed, **({"mixed_precision": False} if len(parts) == 4 else {})}


def train_and_score(settings, folder: Path, name: str) -> tuple[dict, torch.nn.Module]:
    """Train the image model as ``train_image`` does: (its kept epoch and truth AUROC on validation and test, the model)."""
    datasets = load_split_datasets(settings)
    loaders = image_loaders(settings, datasets)
    truth = truth_table(settings)
    if truth is None:
        raise SystemExit(f"no phantom ground truth for {settings.data_dir}: this benchmark scores against it")
    seed_everything(settings.seed)
    model = build_image_model(settings)
    began = time.perf_counter()
    history = fit(model, loaders["fit"], loaders["validate"], settings, folder, name, resume=False, progress=False)
    row = {"kept epoch": history.best_epoch, "seconds": round(time.perf_counter() - began, 1)}
    for split in ("validate", "test"):
        logits, _, rows = predict(model, loaders[split])
        study_ids = datasets[split].cohort["study_id"].to_numpy()[rows]
        row[f"{split} AUROC vs truth"] = round(truth_figures(logits, study_ids, truth)["macro_auroc"], 3)
    return row, model


def map_scores(settings, model, studies: int = 0, road_limit: int = 0) -> dict:
    """Notebook 05's image-model checks on ``model`` (an image model or an ``ImageEnsemble``): probes and the
    first ``studies`` test studies (0: all), localised findings; ROAD on ``road_limit`` findings (0: none)."""
    from cxr_helpers.explain.faithfulness.report import image_model_checks
    from cxr_helpers.explain.study import StudyExplainer
    from cxr_helpers.phantom.probes import ensure_probes
    from cxr_helpers.phantom.truth import load_ground_truth, phantom_root

    explainer = StudyExplainer.from_settings(settings, roles=("image",), cache=False).with_image_model(model.eval())
    truth = load_ground_truth(phantom_root(settings))
    probes = ensure_probes(phantom_root(settings), per_label=settings.probes_per_label)
    test, probe = image_model_checks(explainer, truth, explainer.study_ids("test")[: studies or None], probes,
                                     settings.cam_baseline_negatives, road_limit=road_limit)
    row = {}
    for source, records in (("probes", probe), ("test", test)):
        localised = records[records["extent"] == "localised"]
        detected = localised[localised["detected"].astype(bool)]
        row[f"{source} detected"] = round(len(detected) / max(len(localised), 1), 2)
        for column, title in (("hit", "pointing"), ("hit_baseline", "minus baseline")):
            row[f"{source} {title}"] = share(detected[column], digits=3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default=None, help="a prepared phantom artifacts folder (default: the profile's)")
    parser.add_argument("--runs", nargs="+", default=["8:constant:42", "8:warmup_linear:42"],
                        help="EPOCHS:SCHEDULE:SEED[:fp32] per run")
    parser.add_argument("--maps", action="store_true", help="also score each run's maps as notebook 05 does (minutes)")
    args = parser.parse_args()
    base = load_settings(**({"artifacts_dir": Path(args.artifacts)} if args.artifacts else {}))
    runs = [parse_run(text) for text in args.runs]
    print(f"artifacts {base.artifacts_dir}, {base.image_size} px, lr {base.lr}; bfloat16 instructions: {cpu_computes_bfloat16()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as scratch:
        for text, run in zip(args.runs, runs, strict=True):
            settings = dataclasses.replace(base, **run)
            row = {"run": text, "precision": "bf16" if settings.mixed_precision and cpu_computes_bfloat16() else "fp32"}
            scores, model = train_and_score(settings, Path(scratch), f"recipe{len(rows)}")
            row.update(scores)
            if args.maps:
                row.update(map_scores(settings, model))
            print(row, flush=True)
            rows.append(row)
    print()
    print(pd.DataFrame(rows).set_index("run").to_string())


if __name__ == "__main__":
    main()
