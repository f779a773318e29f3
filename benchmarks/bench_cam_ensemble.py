"""Grad-CAM of several image models averaged (one recipe, several seeds) against each model's own map.

    python benchmarks/bench_cam_ensemble.py --artifacts artifacts/phantom --seeds 1,2,3 [--studies 0] [--keep DIR]

How well one trained image model's maps point varies widely between seeds of the same recipe (README,
"Which model you explain matters"). This trains the phantom profile's image model once per seed
(notebook 02's recipe: ``bench_image_recipe.train_and_score``), then scores with notebook 05's checks
(``image_checks``: detection by the finding-free twin, the pointing game of the map and of the map minus
the label's baseline; localised findings, detected ones) the demo's own image model, each seed's model,
and ``ImageEnsemble``s: the seeds' models together, and the demo's model with them. An ensemble detects
with its mean logit and maps with the mean of its members' maps. Probes and the first ``--studies`` test
studies (0: all). ``--keep DIR`` saves each seed's weights there (``seed<N>.pt``, beside the training run's own
checkpoints) and reuses them on the next run.
Needs the artifacts of ``make demo`` (its image model) and the phantom's ground truth; writes nothing else.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from bench_image_recipe import map_scores, train_and_score  # a sibling script: benchmarks/ is on the path

from cxr_helpers.config import load_settings
from cxr_helpers.explain.study import StudyExplainer
from cxr_helpers.image_model import ImageEnsemble
from cxr_helpers.training import cpu_computes_bfloat16


def seed_model(settings, seed: int, demo: torch.nn.Module, folder: Path) -> tuple[torch.nn.Module, dict]:
    """The recipe's image model trained with ``seed`` (loaded from ``folder/seed<seed>.pt`` when saved there)."""
    path = folder / f"seed{seed}.pt"
    model = copy.deepcopy(demo)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), {"trained": f"loaded {path}"}
    scores, trained = train_and_score(dataclasses.replace(settings, seed=seed), folder, f"seed{seed}_run")
    torch.save(trained.state_dict(), path)
    model.load_state_dict(trained.state_dict())
    return model.eval(), scores


def candidates(demo: torch.nn.Module, seeds: dict[int, torch.nn.Module]) -> dict[str, torch.nn.Module]:
    """Each model alone, then the seeds' ensemble and the demo's model with them."""
    named = {"demo model": demo, **{f"seed {seed}": model for seed, model in seeds.items()}}
    if len(seeds) > 1:
        named["ensemble: seeds " + ", ".join(map(str, seeds))] = ImageEnsemble(list(seeds.values()))
    named["ensemble: demo + seeds " + ", ".join(map(str, seeds))] = ImageEnsemble([demo, *seeds.values()])
    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default=None, help="a prepared phantom artifacts folder (default: the profile's)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds of the extra image models")
    parser.add_argument("--studies", type=int, default=0, help="test studies to score (0: all)")
    parser.add_argument("--keep", default=None, help="a folder to save (and reuse) the seeds' weights in")
    args = parser.parse_args()
    settings = load_settings(**({"artifacts_dir": Path(args.artifacts)} if args.artifacts else {}))
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    print(f"artifacts {settings.artifacts_dir}, {settings.image_size} px, recipe {settings.epochs} epochs "
          f"{settings.lr_schedule}; bfloat16 instructions: {cpu_computes_bfloat16()}")
    demo = StudyExplainer.from_settings(settings, roles=("image",), cache=False).models.get("image").eval()
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as scratch:
        folder = Path(args.keep) if args.keep else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        trained = {}
        for seed in seeds:
            trained[seed], scores = seed_model(settings, seed, demo, folder)
            print(f"seed {seed}: {scores}", flush=True)
        rows = []
        for name, model in candidates(demo, trained).items():
            began = time.perf_counter()
            row = {"model": name, **map_scores(settings, model, args.studies)}
            row["check s"] = round(time.perf_counter() - began)
            print(row, flush=True)
            rows.append(row)
    print()
    print(pd.DataFrame(rows).set_index("model").to_string())


if __name__ == "__main__":
    main()
