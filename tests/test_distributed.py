"""torchrun on the CPU (2 Gloo ranks): the same results as one process, full-set metrics, resume.

Each test starts real ``torchrun --standalone --nproc_per_node=2`` jobs (about two minutes in all
on 2 cores). Deselect them with ``pytest -m "not distributed"``.

Run as a script under torchrun (``torchrun ... tests/test_distributed.py --worker KIND DIR``), this
file is also the worker of the exact-equivalence tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cohort_factory import TinyConvModel
from torch.utils.data.distributed import DistributedSampler

from cxr_helpers.config import load_settings, seed_everything
from cxr_helpers.datasets import CohortImageDataset, make_loader
from cxr_helpers.distributed import distributed_session, world_size
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.training import fit

pytestmark = pytest.mark.distributed

SIZE = 32
GLOBAL_BATCH = 8
RANKS = 2


# ----------------------------------------------------------------------------- exact-equivalence worker


def every_label_valid_cohort(n: int = 36) -> tuple[pd.DataFrame, np.ndarray]:
    """24 train / 12 validate rows with no blank label, so every rank's loss averages as many entries."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, SIZE, SIZE)).astype(np.uint8)
    cohort = pd.DataFrame({"study_id": 50000000 + np.arange(n), "dicom_id": [f"d{i}" for i in range(n)]})
    cohort["split"] = np.where(np.arange(n) % 3 == 2, "validate", "train")
    cohort["cache_index"] = np.arange(n)
    for name in CHEXPERT_LABELS:
        cohort[name] = rng.choice([1, 0, -1], size=n)
    return cohort, images


def run_equivalence_worker(folder: Path) -> None:
    """Fit a dropout-free TinyConvModel: under torchrun with the per-rank batch, alone with the global batch."""
    with distributed_session():
        ranks = world_size()
        settings = load_settings(profile="phantom", fast=True, artifacts_dir=folder, image_size=SIZE, epochs=2,
                                 batch_size=GLOBAL_BATCH // ranks, lr=1e-2,
                                 mixed_precision=False)  # bfloat16 rounds a half batch differently from a whole one
        cohort, images = every_label_valid_cohort()
        train, val = CohortImageDataset(cohort, images, "train"), CohortImageDataset(cohort, images, "validate")
        # Alone: DistributedSampler with one replica gives the permutation whose consecutive
        # global batches the two ranks' shards make up together.
        sampler = None if ranks > 1 else DistributedSampler(train, num_replicas=1, rank=0, shuffle=True,
                                                            seed=settings.seed)
        train_loader = make_loader(train, settings.batch_size, True, settings.seed, sampler=sampler)
        val_loader = make_loader(val, settings.batch_size, False)
        seed_everything(settings.seed)
        fit(TinyConvModel(stride=2, dropout=0.0), train_loader, val_loader, settings, folder, "nonorm", progress=False)


def run_trunks_worker(folder: Path) -> None:
    """Rank 0 saves the image-trunk cache that the ranks built together from ``folder``'s artifacts."""
    from cxr_helpers.distributed import is_main_process
    from cxr_helpers.fusion.trunk_cache import cache_image_trunks
    from cxr_helpers.image_model import load_image_encoder
    from cxr_helpers.prepare import load_cohort, open_image_cache

    with distributed_session():
        settings = load_settings(profile="phantom", fast=True, artifacts_dir=folder)
        cohort = load_cohort(folder)
        trunks = cache_image_trunks(load_image_encoder(settings), cohort, open_image_cache(folder, settings.image_size),
                                    ["pooled", "layer3"], batch_size=4, progress=False)
        if is_main_process():
            np.savez(folder / f"trunks_{world_size()}.npz", **trunks)


WORKERS = {"nonorm": run_equivalence_worker, "trunks": run_trunks_worker}


# ----------------------------------------------------------------------------- helpers


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
    env.update(CXR_FAST="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={RANKS}", *args]


def run_checked(command: list[str], env: dict, cwd: Path) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def without_times(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "seconds"}


@pytest.fixture(scope="module")
def phantom_artifacts(tmp_path_factory) -> Path:
    """A 40-study, 64 px phantom cohort + cache (28 train, 8 validate, 4 test)."""
    from cxr_helpers.prepare import ensure_phantom, prepare_cohort

    root = tmp_path_factory.mktemp("phantom")
    settings = load_settings(profile="phantom", fast=True, data_dir=root / "data" / "mimic-cxr-jpg",
                             reports_dir=root / "data" / "mimic-cxr-reports", artifacts_dir=root / "artifacts",
                             prepare_workers=1)
    ensure_phantom(settings, progress=False)
    prepare_cohort(settings, progress=False)
    return root / "artifacts"


def copy_artifacts(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            shutil.copy2(path, target / path.name)
    return target


# ----------------------------------------------------------------------------- tests


def test_two_ranks_train_exactly_like_one_process_with_the_global_batch(tmp_path):
    env = subprocess_env()
    run_checked(torchrun(__file__, "--worker", "nonorm", str(tmp_path / "ddp")), env, tmp_path)
    run_checked([sys.executable, __file__, "--worker", "nonorm", str(tmp_path / "single")], env, tmp_path)
    ddp, single = checkpoint(tmp_path / "ddp" / "nonorm_last.pt"), checkpoint(tmp_path / "single" / "nonorm_last.pt")
    assert ddp["meta"]["fingerprint"]["world_size"] == RANKS
    assert "world_size" not in single["meta"]["fingerprint"]
    seed_everything(42)
    initial = TinyConvModel(stride=2, dropout=0.0).state_dict()
    assert not torch.allclose(single["state_dict"]["head.1.weight"], initial["head.1.weight"])  # it did train
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-4, atol=1e-6)
    ddp_history, single_history = without_times(ddp["history"]), without_times(single["history"])
    assert ddp_history.keys() == single_history.keys()
    for key, values in single_history.items():
        if key in ("epoch", "best_epoch"):
            assert ddp_history[key] == values
        else:
            np.testing.assert_allclose(ddp_history[key], values, rtol=1e-5, atol=1e-6)


def test_cli_under_torchrun_resumes_a_killed_job_and_scores_the_whole_validation_split(tmp_path, phantom_artifacts):
    from cxr_helpers.datasets import load_split_datasets
    from cxr_helpers.image_model import build_image_model
    from cxr_helpers.metrics import masked_bce
    from cxr_helpers.training import predict

    env = subprocess_env() | {"CXR_EPOCHS": "3", "CXR_BATCH_SIZE": "8"}  # 8 per rank: 2 steps per epoch
    whole, killed = copy_artifacts(phantom_artifacts, tmp_path / "whole"), copy_artifacts(phantom_artifacts, tmp_path / "killed")
    run_checked(torchrun("-m", "cxr_helpers", "train", "image", "--artifacts", str(whole)), env, tmp_path)

    # Kill a second, identical job once its first epoch's checkpoint exists, then run it again.
    last = killed / "checkpoints" / "image_last.pt"
    job = subprocess.Popen(torchrun("-m", "cxr_helpers", "train", "image", "--artifacts", str(killed)), env=env,
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not last.exists() and job.poll() is None:
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=120)
    interrupted = checkpoint(last)
    assert interrupted["epoch"] < 3, "the job finished before it could be killed; the test proves nothing"
    output = run_checked(torchrun("-m", "cxr_helpers", "train", "image", "--artifacts", str(killed)), env, tmp_path)
    assert f"after epoch {interrupted['epoch']}" in output  # it resumed, and only rank 0 said so
    assert output.count("Resuming") == 1

    resumed, uninterrupted = checkpoint(last), checkpoint(whole / "checkpoints" / "image_last.pt")
    assert resumed["history"]["epoch"] == [1, 2, 3]
    assert without_times(resumed["history"]) == without_times(uninterrupted["history"])
    for key, value in uninterrupted["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0)

    # The recorded validation loss is the whole split's (not one rank's half): recompute it alone.
    settings = load_settings(profile="phantom", fast=True, artifacts_dir=whole)
    best = checkpoint(whole / "checkpoints" / "image.pt")
    model = build_image_model(settings)
    model.load_state_dict(best["state_dict"])
    val = load_split_datasets(settings, ("validate",))["validate"]
    logits, targets, indices = predict(model, make_loader(val, 4, False), torch.device("cpu"))
    assert len(indices) == len(val) == 8
    assert masked_bce(logits, targets, settings.uncertainty_policy, settings.blank_policy) == pytest.approx(best["meta"]["val_loss"], abs=1e-5)
    metrics = json.loads((whole / "metrics" / "image.json").read_text())
    assert "image" in json.dumps(metrics)
    test_rows = pd.read_csv(whole / "predictions" / "image_test.csv")
    assert len(test_rows) == 4 and test_rows["dicom_id"].is_unique  # gathered once, written once


@pytest.fixture(scope="module")
def image_artifacts(phantom_artifacts, tmp_path_factory) -> Path:
    """The phantom cohort plus an image model trained for one epoch in one process (notebook 02's output)."""
    from cxr_helpers.image_training import train_image

    folder = copy_artifacts(phantom_artifacts, tmp_path_factory.mktemp("image") / "artifacts")
    train_image(load_settings(profile="phantom", fast=True, artifacts_dir=folder, epochs=1), progress=False)
    return folder


def test_ranks_split_the_image_trunk_cache_and_every_rank_gets_all_of_it(tmp_path, image_artifacts):
    env = subprocess_env()
    run_checked(torchrun(__file__, "--worker", "trunks", str(image_artifacts)), env, tmp_path)
    run_checked([sys.executable, __file__, "--worker", "trunks", str(image_artifacts)], env, tmp_path)
    together, alone = np.load(image_artifacts / f"trunks_{RANKS}.npz"), np.load(image_artifacts / "trunks_1.npz")
    for kind in ("pooled", "layer3"):
        assert np.abs(alone[kind]).sum(axis=tuple(range(1, alone[kind].ndim))).min() > 0  # every row filled
        np.testing.assert_allclose(together[kind], alone[kind], rtol=1e-5, atol=1e-6)


def test_text_and_fusion_train_under_torchrun_with_shared_caches_built_once(tmp_path, image_artifacts):
    from cxr_helpers.config import TEXT_SETTINGS
    from cxr_helpers.text.embeddings import embeddings_paths

    env = subprocess_env() | {"CXR_EPOCHS": "2", "CXR_FUSION_E2E_EPOCHS": "1"}
    ddp, single = copy_artifacts(image_artifacts, tmp_path / "ddp"), copy_artifacts(image_artifacts, tmp_path / "single")
    for folder in (ddp, single):
        shutil.copytree(image_artifacts / "checkpoints", folder / "checkpoints")
    text_output = run_checked(torchrun("-m", "cxr_helpers", "train", "text", "--artifacts", str(ddp)), env, tmp_path)
    run_checked([sys.executable, "-m", "cxr_helpers", "train", "text", "--artifacts", str(single)], env, tmp_path)
    assert text_output.count("Building the offline tiny BERT") == 1  # rank 0 built it, rank 1 read it

    # Rank 0 built the caches alone and rank 1 read them back: the same bytes one process makes.
    ddp_settings = load_settings(profile="phantom", fast=True, artifacts_dir=ddp)
    single_settings = load_settings(profile="phantom", fast=True, artifacts_dir=single)
    for setting in TEXT_SETTINGS:
        np.testing.assert_array_equal(np.load(embeddings_paths(ddp_settings, setting)[0]),
                                      np.load(embeddings_paths(single_settings, setting)[0]))
    ddp_text, single_text = (json.loads((f / "metrics" / "text.json").read_text())["models"] for f in (ddp, single))
    assert ddp_text.keys() == single_text.keys()
    for name in ddp_text:
        if name.startswith(("tfidf", "baseline")):  # no DDP inside: the same figures
            assert ddp_text[name]["test"]["loss"] == pytest.approx(single_text[name]["test"]["loss"], nan_ok=True)

    fusion_output = run_checked(torchrun("-m", "cxr_helpers", "train", "fusion", "--artifacts", str(ddp)), env,
                                tmp_path)
    fusion = json.loads((ddp / "metrics" / "fusion.json").read_text())
    assert len(fusion["models"]) == 7 and fusion_output.count("== fusion_concat_indication") == 1
    test_size = int((pd.read_csv(ddp / "cohort.csv")["split"] == "test").sum())
    for name, splits in fusion["models"].items():
        # Ablation and metrics both score the whole test split on every rank (gathered, not one shard).
        full = fusion["ablation"][name]["full"]
        assert splits["test"]["n"] == full["n"] == test_size
        assert full["loss"] == pytest.approx(splits["test"]["loss"], rel=1e-5)
        rows = pd.read_csv(ddp / "predictions" / f"{name}_test.csv")
        assert len(rows) == test_size and rows["dicom_id"].is_unique
        meta = checkpoint(ddp / "checkpoints" / f"{name}.pt")["meta"]
        assert meta["fingerprint"]["world_size"] == RANKS and meta["strategy"] in name


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_two_node_launch_on_loopback_trains_as_one_job(tmp_path, phantom_artifacts):
    """Multi-node torchrun (--nnodes 2, one launcher per "node") over 127.0.0.1: one job of 2 ranks."""
    env = subprocess_env() | {"CXR_EPOCHS": "1"}
    folder = copy_artifacts(phantom_artifacts, tmp_path / "artifacts")
    port = free_port()
    launchers = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                          f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}",
                          "-m", "cxr_helpers", "train", "image", "--artifacts", str(folder)],
                         env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in (0, 1)
    ]
    outputs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    for launcher, output in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, output[-3000:]
    assert "torchrun: 2 processes, gloo backend" in outputs[0]
    assert "torchrun:" not in outputs[1]  # only rank 0 (on node 0) prints
    saved = checkpoint(folder / "checkpoints" / "image_last.pt")
    assert saved["meta"]["fingerprint"]["world_size"] == 2 and saved["epoch"] == 1


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "--worker" or sys.argv[2] not in WORKERS:
        sys.exit(f"usage: [torchrun ...] {sys.argv[0]} --worker {{{','.join(WORKERS)}}} DIR")
    WORKERS[sys.argv[2]](Path(sys.argv[3]))
