"""Full MIMIC-CXR scale: measured data-path figures here, projected prepare and epoch times there.

    python benchmarks/bench_scale.py --studies 48 --jpeg-size 1024 --loader-images 2048 --train-steps 3

Measures on this machine (CPU):
1. image cache building (``images.build_image_cache``), 1 process vs all cores, on a generated
   phantom whose JPEGs are re-encoded at ``--jpeg-size`` rows with film-like noise;
2. the training loader's images/s (``datasets.make_loader`` over a ``--loader-images`` memmapped
   224 px cache) vs the image model's train-step images/s (forward + backward + AdamW);
3. peak memory: resident set of this process and of the cache workers (getrusage), and the peak
   Python/NumPy allocation while loading (tracemalloc);
4. on a CUDA machine: the image model's train-step and forward-only images/s on the GPU, as
   ``training.fit`` runs it (bf16 autocast), and report embeddings/s of a BERT-base-sized encoder
   (CXR-BERT's size; random weights, the phantom's reports) through ``text_model.compute_embeddings``.
Then projects ``prepare``, report embedding and one epoch on the whole of MIMIC-CXR-JPG (377,110
images, 227,835 reports) on one GPU and on 8 GPUs. Every number that is not measured here is printed
as an ASSUMPTION with its source; change them with the options.
Run from the repository root (it imports ``enlarge_jpegs`` from benchmarks/bench_prepare.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_prepare import MIMIC_ASPECT, enlarge_jpegs, time_cache
from numpy.lib.format import open_memmap

from cxr_helpers.cohort import select_cohort
from cxr_helpers.datasets import CohortImageDataset, make_loader
from cxr_helpers.image_model import ImageClassifier
from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.metrics import masked_bce
from cxr_helpers.mimic import read_layout
from cxr_helpers.phantom import write_phantom

MIMIC_IMAGES = 377_110  # MIMIC-CXR-JPG v2.0.0, all views
MIMIC_REPORTS = 227_835  # MIMIC-CXR v2.0.0 free-text reports (one per study)
MIMIC_ROWS = 3056  # typical rows of a MIMIC-CXR-JPG file (2544 x 3056)
SPLIT_FRACTIONS = (0.7, 0.2, 0.1)  # the paper's train / validate / test


def max_rss_mib(who: int) -> float:
    """Peak resident set size in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss / 1024


def cache_rate(paths: list[str], size: int, workers: int) -> float:
    """Images/s building a fresh cache of ``paths`` with ``workers`` processes."""
    return len(paths) / time_cache(paths, size, workers)


def phantom_jpegs(studies: int, jpeg_rows: int, root: Path) -> tuple[list[str], list[str]]:
    """Frontal JPEG paths of a fresh phantom, re-encoded at ``jpeg_rows`` rows (MIMIC's aspect), and its reports."""
    write_phantom(root, n_studies=studies, image_size=256, seed=0, workers=1, progress=False)
    selection = select_cohort(read_layout(root / "mimic-cxr-jpg", root / "mimic-cxr-reports"), seed=0)
    paths = selection.cohort["image_path"].tolist()
    enlarge_jpegs(paths, jpeg_rows)
    return paths, list(selection.reports.values())


def synthetic_dataset(count: int, size: int, folder: Path) -> CohortImageDataset:
    """A memmapped (count, size, size) uint8 cache and a cohort over it, all rows in "train"."""
    rng = np.random.default_rng(0)
    cache = open_memmap(folder / f"images_{size}.npy", mode="w+", dtype=np.uint8, shape=(count, size, size))
    for start in range(0, count, 256):
        cache[start : start + 256] = rng.integers(0, 256, size=cache[start : start + 256].shape, dtype=np.uint8)
    cache.flush()
    cohort = pd.DataFrame({"study_id": np.arange(count), "split": "train", "cache_index": np.arange(count)})
    for name in CHEXPERT_LABELS:
        cohort[name] = rng.choice([1, 0, -1, -2], size=count)
    return CohortImageDataset(cohort, np.load(folder / f"images_{size}.npy", mmap_mode="r"), "train")


def loader_rate(dataset: CohortImageDataset, batch_size: int, num_workers: int) -> tuple[float, float]:
    """Images/s of one shuffled pass, and the peak traced allocation in MiB during it."""
    loader = make_loader(dataset, batch_size, True, seed=0, num_workers=num_workers)
    tracemalloc.start()
    start = time.perf_counter()
    images = 0
    for batch in loader:
        images += batch["image"].shape[0]  # (B, 1, S, S) float32
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return images / seconds, peak / 2**20


def _timed(step, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step`` after one warm-up call (device work waited for)."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def image_model_rates(size: int, batch_size: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Images/s of a train step (forward + masked BCE + backward + AdamW) and of forward alone.

    The paper's image model, run as ``training.fit`` runs it: bf16 autocast on CUDA, float32 on the CPU.
    """
    torch.manual_seed(0)
    model = ImageClassifier(dropout=0.5, freeze_through="layer2").to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    image = torch.rand(batch_size, 1, size, size, device=device)  # (B, 1, S, S)
    targets = torch.randint(-2, 2, (batch_size, len(CHEXPERT_LABELS)), device=device).float()  # (B, 14)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def train_step() -> None:
        with autocast:
            logits = model(image=image)
        loss = masked_bce(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def forward() -> None:
        with autocast:
            model(image=image)

    train = steps * batch_size / _timed(train_step, steps, device)
    model.eval()
    return train, steps * batch_size / _timed(forward, steps, device)


def fit_rates(dataset: CohortImageDataset, device: torch.device, batch_size: int, folder: Path) -> dict:
    """Images/s of ``training.fit``'s second epoch over ``dataset`` for (mixed precision, loader workers) pairs.

    The real loop: the training loader (memmap -> float batches), host-to-GPU copies, the train step
    and its bookkeeping. The first epoch pays start-up costs (cuDNN autotuning, workers starting).
    """
    from cxr_helpers.config import load_settings
    from cxr_helpers.training import fit

    rates = {}
    for mixed_precision in (False, True):
        for workers in (0, 4):
            settings = load_settings(profile="phantom", image_size=dataset.image_size, batch_size=batch_size, epochs=2,
                                     num_workers=workers, mixed_precision=mixed_precision, artifacts_dir=folder)
            loader = make_loader(dataset, batch_size, True, seed=0, num_workers=workers)
            torch.manual_seed(0)
            model = ImageClassifier(dropout=0.5, freeze_through="layer2")
            history = fit(model, loader, None, settings, folder / "fit", f"bench_{mixed_precision}_{workers}",
                          resume=False, progress=False, device=device, restore_best=False)
            rates[mixed_precision, workers] = len(dataset) / history.seconds[-1]
    return rates


def embedding_rate(reports: list[str], device: torch.device, batch_size: int, copies: int) -> tuple[float, float]:
    """Reports/s of ``compute_embeddings`` with a BERT-base-sized encoder, and the mean tokens per report.

    The tokenizer is the phantom's WordPiece (trained here on ``reports``); the encoder has
    CXR-BERT's shape (12 layers, 768 wide) with random weights: the cost is the same.
    """
    from transformers import BertConfig, BertModel

    from cxr_helpers.text.encoder import compute_embeddings
    from cxr_helpers.text.tiny_bert import wordpiece_vocabulary, wrap_tokenizer

    tokenizer = wrap_tokenizer(wordpiece_vocabulary(reports))
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer))).eval()
    texts = reports * copies
    compute_embeddings(texts[:batch_size], tokenizer, encoder, batch_size, device=device, progress=False)  # warm-up
    start = time.perf_counter()
    compute_embeddings(texts, tokenizer, encoder, batch_size, device=device, progress=False)
    seconds = time.perf_counter() - start
    tokens = np.mean([len(ids) for ids in tokenizer(reports, truncation=True, max_length=256)["input_ids"]])
    return len(texts) / seconds, float(tokens)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=48, help="phantom studies for the cache benchmark")
    parser.add_argument("--jpeg-size", type=int, default=1024, help="rows of the re-encoded JPEGs")
    parser.add_argument("--mimic-sample", type=int, default=16,
                        help="of those, re-encode this many at MIMIC's 3056 rows to time decoding at full size (0: skip)")
    parser.add_argument("--image-size", type=int, default=224, help="cache and model side in pixels")
    parser.add_argument("--loader-images", type=int, default=2048, help="images in the synthetic loader cache")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=3, help="timed CPU train steps")
    parser.add_argument("--gpu-rate", type=float, default=2500.0,
                        help="ASSUMED ResNet-18 224 px train images/s per GPU where no GPU is here to measure")
    parser.add_argument("--gpu-batch-size", type=int, default=256, help="batch for the GPU measurements")
    parser.add_argument("--gpu-steps", type=int, default=20, help="timed GPU steps")
    parser.add_argument("--multi-gpu-efficiency", type=float, default=0.9, help="ASSUMED DDP scaling efficiency")
    parser.add_argument("--cores-1gpu", type=int, default=8, help="ASSUMED CPU cores of a 1-GPU machine")
    parser.add_argument("--cores-8gpu", type=int, default=64, help="ASSUMED CPU cores of an 8-GPU node")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    print(f"machine: {cores} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        # 1. image cache building
        paths, reports = phantom_jpegs(args.studies, args.jpeg_size, root / "phantom")
        size_mb = np.mean([os.path.getsize(p) for p in paths]) / 1e6
        serial = cache_rate(paths, args.image_size, 1)
        parallel = cache_rate(paths, args.image_size, cores)
        print(f"\n1. cache building: {len(paths)} JPEGs of {round(args.jpeg_size * MIMIC_ASPECT)}x{args.jpeg_size} px "
              f"({size_mb:.2f} MB each) -> {args.image_size} px")
        print(f"   1 process: {serial:8.1f} images/s | {cores} processes: {parallel:8.1f} images/s "
              f"(speed-up {parallel / serial:.2f}x)")
        mimic_rate = None
        if args.mimic_sample:
            big = root / "mimic-size"
            big.mkdir()
            sample = [str(shutil.copy(path, big / f"{i}.jpg")) for i, path in enumerate(paths[: args.mimic_sample])]
            enlarge_jpegs(sample, MIMIC_ROWS)
            mimic_rate = cache_rate(sample, args.image_size, 1)
            print(f"   {len(sample)} of them at {round(MIMIC_ROWS * MIMIC_ASPECT)}x{MIMIC_ROWS} px "
                  f"({np.mean([os.path.getsize(p) for p in sample]) / 1e6:.2f} MB each), 1 process: "
                  f"{mimic_rate:8.1f} images/s")

        # 2. loader vs train step
        dataset = synthetic_dataset(args.loader_images, args.image_size, root)
        loads, traced_mib = loader_rate(dataset, args.batch_size, 0)
        trains, _ = image_model_rates(args.image_size, args.batch_size, args.train_steps, torch.device("cpu"))
        print(f"\n2. loader (1 process, memmap, batch {args.batch_size}): {loads:8.1f} images/s "
              f"({loads * args.image_size**2 / 1e6:.0f} MB/s of uint8 pixels)")
        print(f"   train step on this CPU (ResNet-18, frozen through layer2): {trains:8.1f} images/s")
        print(f"   loader / train-step ratio: {loads / trains:.0f}x (> 1: the model, not the data, is the bottleneck)")

        # 3. memory
        print(f"\n3. peak memory: this process {max_rss_mib(resource.RUSAGE_SELF):.0f} MiB RSS; "
              f"largest cache worker {max_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB RSS; "
              f"loader pass traced peak {traced_mib:.1f} MiB")

        # 4. the GPU, where there is one
        gpu_train = gpu_eval = embed_rate = loop_rate = None
        if torch.cuda.is_available():
            gpu = torch.device("cuda")
            gpu_train, gpu_eval = image_model_rates(args.image_size, args.gpu_batch_size, args.gpu_steps, gpu)
            embed_rate, tokens = embedding_rate(reports, gpu, args.gpu_batch_size, copies=max(1, 8192 // len(reports)))
            print(f"\n4. GPU {torch.cuda.get_device_name()}: image model (batch {args.gpu_batch_size}, bf16 autocast) "
                  f"train step {gpu_train:8.0f} images/s, forward only {gpu_eval:8.0f} images/s")
            print(f"   loader (1 process) / GPU train-step ratio: {loads / gpu_train:.1f}x")
            rates = fit_rates(dataset, gpu, args.gpu_batch_size, root)
            loop_rate = max(rates.values())
            print(f"   training.fit, whole loop, batch {args.gpu_batch_size}, images/s: " + ", ".join(
                f"{'bf16' if amp else 'fp32'} + {workers} loader workers {rate:.0f}" for (amp, workers), rate in rates.items()))
            print(f"   report embeddings, BERT-base size, whole phantom reports of {tokens:.0f} tokens on average: "
                  f"{embed_rate:8.0f} reports/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    # 5. projection
    pixel_ratio = (MIMIC_ROWS / args.jpeg_size) ** 2
    per_core = mimic_rate or serial / pixel_ratio
    train_images = SPLIT_FRACTIONS[0] * MIMIC_IMAGES
    eval_images = SPLIT_FRACTIONS[1] * MIMIC_IMAGES
    cache_gb = MIMIC_IMAGES * args.image_size**2 / 1e9
    print("\n5. projection for all of MIMIC-CXR-JPG: "
          f"{MIMIC_IMAGES:,} images, {args.image_size} px, train {train_images:,.0f} / validate {eval_images:,.0f}")
    if mimic_rate:
        print(f"   MEASURED decode at MIMIC size: {per_core:.1f} images/s per core "
              f"(pixel-count scaling from {args.jpeg_size} rows would have said {serial / pixel_ratio:.1f})")
    else:
        print(f"   ASSUMPTION decode cost grows with pixels: {MIMIC_ROWS}-row files cost {pixel_ratio:.1f}x the "
              f"{args.jpeg_size}-row ones -> {per_core:.1f} images/s per core")
    print(f"   ASSUMPTION cache building scales linearly with cores (measured here: "
          f"{parallel / serial:.2f}x on {cores} cores); prepare's CSV/report reading is not included")
    if gpu_train:
        print(f"   MEASURED GPU rate of the whole training.fit loop {loop_rate:.0f} images/s (train step alone "
              f"{gpu_train:.0f}, forward alone {gpu_eval:.0f}: validation at the same ratio) on this GPU")
        gpu_rate, eval_factor = loop_rate, gpu_eval / gpu_train
    else:
        print(f"   ASSUMPTION GPU train rate {args.gpu_rate:.0f} images/s per GPU (ResNet-18 224 px, AMP; "
              "public A100 ResNet-50 AMP figures ~2,500-3,000 images/s, ResNet-18 needs ~2.3x fewer FLOPs: conservative)")
        print("   ASSUMPTION evaluation (forward only) runs at 3x the train rate")
        gpu_rate, eval_factor = args.gpu_rate, 3.0
    print(f"   ASSUMPTION DDP efficiency {args.multi_gpu_efficiency:.0%} on 8 GPUs; image cache ({cache_gb:.1f} GB) "
          "in the page cache")
    if embed_rate:
        print(f"   MEASURED report embeddings: {MIMIC_REPORTS:,} reports in {hours(MIMIC_REPORTS / embed_rate)} on one "
              "GPU at the measured tokens per report (rank 0 alone builds the cache)")
    print(f"   {'':>8} {'cores':>5} {'prepare (decode)':>17} {'GPU img/s':>10} {'train pass':>11} "
          f"{'+ validation':>13} {'loader procs needed':>20}")
    for gpus, machine_cores in ((1, args.cores_1gpu), (8, args.cores_8gpu)):
        prepare_s = MIMIC_IMAGES / (per_core * machine_cores)
        rate = gpu_rate * gpus * (args.multi_gpu_efficiency if gpus > 1 else 1.0)
        train_s = train_images / rate
        epoch_s = train_s + eval_images / (eval_factor * rate)
        workers = int(np.ceil(rate / loads))
        print(f"   {gpus:>2} GPU{'s' if gpus > 1 else ' '} {machine_cores:>5} {hours(prepare_s):>17} {rate:>10.0f} "
              f"{hours(train_s):>11} {hours(epoch_s):>13} {workers:>20}")
    print(f"   (this CPU, for scale: one train pass would take {hours(train_images / trains)})")


if __name__ == "__main__":
    main()
