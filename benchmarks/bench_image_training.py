"""Image-model training throughput: the uint8 cache loader vs decoding the JPEGs every epoch.

    python benchmarks/bench_image_training.py                       # builds a small phantom
    python benchmarks/bench_image_training.py --artifacts artifacts/phantom --image-size 128

Side by side in one run, on the same model and batches, it prints images per second for
- the loader alone (how fast batches arrive) and
- loader + training step (forward, masked BCE, backward, AdamW step),
for three loaders: the cache read a whole batch at a time (what the workbook uses), the cache read
one image at a time (default PyTorch collation), and decoding + resizing each JPEG with
``images.load_image`` every epoch (no cache); and the workbook's loader again with the convolution
weights in channels_last memory (an option the workbook does not take: see ``training_rate``),
again under bfloat16 autocast (what ``fit`` does with ``mixed_precision`` on a CPU with bfloat16
instructions: the phantom profile's default there; on a CPU without them the figure shows the emulation's cost),
and with both.
When the loader rate is far above the training rate, the model, not the data, is the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cxr_helpers.config import load_settings, pick_device
from cxr_helpers.datasets import CohortImageDataset, make_loader
from cxr_helpers.image_model import ImageClassifier
from cxr_helpers.images import load_image
from cxr_helpers.metrics import masked_bce
from cxr_helpers.training import cpu_computes_bfloat16


class PerImageCache(Dataset):
    """The cache read one image per call, collated by PyTorch (what a naive Dataset does)."""

    def __init__(self, dataset: CohortImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> dict:
        return self.dataset[position]


class JpegDataset(Dataset):
    """Decode and resize the JPEG of each cohort row every time it is asked for (no cache)."""

    def __init__(self, dataset: CohortImageDataset):
        self.dataset = dataset
        self.paths = dataset.cohort["image_path"].to_numpy()[dataset.rows]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> dict:
        pixels = load_image(self.paths[position], self.dataset.image_size)  # float32 (S, S) in [0, 1]
        return {
            "image": torch.from_numpy(pixels).unsqueeze(0),
            "targets": torch.from_numpy(self.dataset.targets[position]),
            "index": torch.tensor(self.dataset.rows[position]),
        }


def _cycle(loader: DataLoader):
    """Batches forever, epoch after epoch."""
    while True:
        yield from loader


def loader_rate(loader: DataLoader, batches: int, repeats: int = 3) -> float:
    """Images per second delivered by the loader alone: best of ``repeats`` timings, after a warm-up epoch."""
    stream = _cycle(loader)
    for _ in range(max(1, len(loader))):  # first batches pay one-off costs (thread pools, allocator)
        next(stream)
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        for _ in range(batches):
            count += len(next(stream)["index"])
        best = max(best, count / (time.perf_counter() - start))
    return best


def training_rate(loader: DataLoader, batches: int, device: torch.device, freeze_through: str,
                  memory_format: torch.memory_format = torch.contiguous_format, bfloat16: bool = False) -> float:
    """Images per second for loader + forward + masked BCE + backward + AdamW step (after one warm-up batch).

    ``memory_format``: the layout of the convolution weights (the workbook's model keeps the default,
    contiguous; channels_last computes the same logits up to rounding, which changes every trained figure).
    ``bfloat16``: the forward pass under bfloat16 autocast, as ``fit`` runs it with ``mixed_precision``
    on a CPU with bfloat16 instructions (the phantom profile's default there).
    """
    torch.manual_seed(0)
    model = ImageClassifier(freeze_through=freeze_through).to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    stream, count, start = _cycle(loader), 0, None
    for i in range(batches + 1):
        batch = next(stream)
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bfloat16):
            logits = model(batch["image"].to(device))
        loss = masked_bce(logits.float(), batch["targets"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(batch["index"]) if i >= 1 else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def prepared_artifacts(args: argparse.Namespace, scratch: Path) -> Path:
    """The artifacts folder to read: --artifacts, or a small phantom prepared in ``scratch``."""
    if args.artifacts:
        return Path(args.artifacts)
    from cxr_helpers.phantom import write_phantom
    from cxr_helpers.prepare import prepare_cohort

    start = time.perf_counter()
    write_phantom(scratch / "phantom", n_studies=args.studies, image_size=args.jpeg_size, seed=0, progress=False)
    settings = load_settings(profile="phantom", fast=False, artifacts_dir=scratch / "artifacts",
                             data_dir=scratch / "phantom" / "mimic-cxr-jpg",
                             reports_dir=scratch / "phantom" / "mimic-cxr-reports", image_size=args.image_size)
    prepare_cohort(settings, progress=False)
    print(f"phantom: {args.studies} studies, {args.jpeg_size} px JPEGs, prepared in {time.perf_counter() - start:.1f} s")
    return settings.artifacts_dir


def machine_line(device: torch.device) -> str:
    """CPU, cores, torch threads and device, for the table header."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), device {device} [{name}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default=None, help="a prepared artifacts folder (default: build a phantom)")
    parser.add_argument("--studies", type=int, default=200, help="phantom studies when building one")
    parser.add_argument("--jpeg-size", type=int, default=256, help="phantom JPEG side when building one")
    parser.add_argument("--image-size", type=int, default=128, help="model input side (the cache's size)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10, help="batches timed per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved training measurements per loader (median)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--freeze-through", default="none", help="none: the phantom profile (no pretrained weights)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    args = parser.parse_args()
    device = pick_device(args.device)

    with tempfile.TemporaryDirectory(prefix="bench-training-") as temporary:
        scratch = Path(temporary)
        from cxr_helpers.images import open_image_cache
        from cxr_helpers.prepare import load_cohort

        artifacts = prepared_artifacts(args, scratch)
        cohort = load_cohort(artifacts)
        train = CohortImageDataset(cohort, open_image_cache(artifacts, args.image_size), "train")
        common = dict(batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                      generator=torch.Generator().manual_seed(0), persistent_workers=args.workers > 0)
        workbook = make_loader(train, args.batch_size, True, 0, num_workers=args.workers)
        loaders = {
            "cache, whole batch (workbook)": workbook,
            "same, channels_last conv weights": workbook,
            "same, bfloat16 autocast": workbook,
            "same, bfloat16 + channels_last": workbook,
            "cache, one image per call": DataLoader(PerImageCache(train), **common),
            "JPEG decode every epoch": DataLoader(JpegDataset(train), **common),
        }
        started = time.perf_counter()
        np.asarray(train.images).sum()  # read the whole cache once: all loaders start warm
        cold_seconds = time.perf_counter() - started
        print(machine_line(device), "| bfloat16 instructions:", cpu_computes_bfloat16())
        print(f"{len(train)} training images, {args.image_size} px, batch {args.batch_size}, "
              f"{args.batches} batches x {args.rounds} rounds per figure, {args.workers} loader workers, freeze_through={args.freeze_through}\n")
        delivered = {name: loader_rate(loader, args.batches) for name, loader in loaders.items()}
        trained: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.rounds):  # interleaved rounds, median: fair when other work shares the machine
            for name, loader in loaders.items():
                layout = torch.channels_last if "channels_last" in name else torch.contiguous_format
                trained[name].append(training_rate(loader, args.batches, device, args.freeze_through, layout,
                                                   bfloat16="bfloat16" in name))
        print(f"{'loader':<32} {'loader img/s':>13} {'train img/s':>12} {'(min-max)':>13} {'train s/epoch':>14}")
        for name in loaders:
            rate = float(np.median(trained[name]))
            spread = f"{min(trained[name]):.1f}-{max(trained[name]):.1f}"
            print(f"{name:<32} {delivered[name]:>13.0f} {rate:>12.1f} {spread:>13} {len(train) / rate:>14.1f}")
        megabytes = train.images.nbytes / 2**20
        print(f"\ncache: {train.images.shape[0]} x {args.image_size}^2 uint8 = {megabytes:.1f} MiB, first full read "
              f"{cold_seconds:.2f} s ({megabytes / max(cold_seconds, 1e-9):.0f} MiB/s; later epochs hit the page cache)")


if __name__ == "__main__":
    main()
