"""torchrun support: the process group from torchrun's environment, rank helpers, teardown.

``torchrun`` starts one process per GPU (or per CPU slot) and sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT. ``init_distributed`` turns those into a process group
(NCCL on CUDA, Gloo on the CPU) and pins each process to its own GPU. The DDP pieces ``fit``
uses live here too (wrapping with SyncBatchNorm, one copy of BatchNorm statistics, a dropout
stream per rank); ``training.fit`` and ``datasets.make_loader`` switch them on when a group is
initialised (DistributedSampler, gathered predictions, rank-0-only writes).
Outside torchrun every function here is a harmless no-op, so the same command runs both ways.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import torch
from torch import nn

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# How long a rank waits at a barrier. Rank 0 alone builds the shared caches (report embeddings of the
# whole cohort, say) while the others wait, which outlasts NCCL's 10-minute default on full MIMIC.
TIMEOUT_VAR, DEFAULT_TIMEOUT_MINUTES = "CXR_DIST_TIMEOUT_MIN", 120


def launched_by_torchrun() -> bool:
    """True when torchrun's environment variables are set (this process is one rank of a job)."""
    return all(os.environ.get(name) not in (None, "") for name in TORCHRUN_VARS)


def is_initialized() -> bool:
    """True inside an initialised process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def default_backend() -> str:
    """NCCL when CUDA is available, Gloo on the CPU."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str | None = None) -> bool:
    """Initialise the process group from torchrun's environment; True if one is (now) running.

    Outside torchrun nothing happens and False is returned. On CUDA each process is pinned to
    ``cuda:LOCAL_RANK`` before the group starts, so ``torch.device("cuda")`` means its own GPU.
    """
    if is_initialized():
        return True
    if not launched_by_torchrun():
        return False
    if not torch.distributed.is_available():
        raise RuntimeError("torchrun started this process but this torch build has no torch.distributed")
    backend = backend or default_backend()
    if backend == "nccl":
        local = local_rank()
        if local >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are visible; "
                "use --nproc_per_node <= the number of GPUs"
            )
        torch.cuda.set_device(local)
    minutes = float(os.environ.get(TIMEOUT_VAR) or DEFAULT_TIMEOUT_MINUTES)
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(minutes=minutes))
    return True


def rank() -> int:
    """This process's global rank (0 outside torchrun)."""
    return torch.distributed.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the job (1 outside torchrun)."""
    return torch.distributed.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its node (= its GPU index); 0 outside torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, and always outside torchrun: the one process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op outside torchrun)."""
    if is_initialized():
        torch.distributed.barrier()


def gather_arrays(array: np.ndarray) -> np.ndarray:
    """Every rank's ``array`` concatenated in rank order (the array itself outside torchrun)."""
    if not is_initialized():
        return array
    parts: list = [None] * world_size()
    torch.distributed.all_gather_object(parts, array)
    return np.concatenate(parts)


def gather_rows(indices: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """(indices, *arrays) of every rank's shard, sorted by index, DistributedSampler's padding dropped.

    Each array's first axis matches ``indices`` (the cohort rows a rank saw); the result covers
    the whole split once, in the same order on every rank.
    """
    indices = gather_arrays(np.asarray(indices))
    gathered = [gather_arrays(np.asarray(a)) for a in arrays]
    indices, first = np.unique(indices, return_index=True)  # sorted, duplicates dropped
    return (indices, *(a[first] for a in gathered))


def shard(n: int) -> range:
    """The rows 0..n-1 that this rank handles when work is split without padding (all of them alone)."""
    return range(rank(), n, world_size())


def sum_across_ranks(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of ``array`` over all ranks, in place (unchanged outside torchrun).

    With rows split by ``shard`` and the others left at zero, this gives every rank the full array.
    """
    if is_initialized():
        device = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else "cpu"
        tensor = torch.from_numpy(array).to(device)
        torch.distributed.all_reduce(tensor)
        array[...] = tensor.cpu().numpy()
    return array


# ----------------------------------------------------------------------------- DDP and per-rank random streams
def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself when not wrapped)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def ddp_device(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, "cuda" means this rank's GPU (set by distributed.init_distributed)."""
    if device.type == "cuda" and device.index is None and is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel, with SyncBatchNorm on CUDA so BatchNorm sees the global batch.

    ``convert_sync_batchnorm`` swaps the BatchNorm modules inside ``model`` in place and keeps the
    same Parameter objects (the optimizer is unaffected, state_dict keys are unchanged). Gloo on the
    CPU has no SyncBatchNorm kernel: there each rank normalises with its own batch's statistics.
    """
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before evaluating.

    DDP broadcasts them at the start of each training forward, but the last step leaves each
    rank's statistics updated by its own shard; evaluation and the saved checkpoint need one copy.
    """
    if is_initialized():
        for buffer in unwrap(model).buffers():
            torch.distributed.broadcast(buffer, src=0)


def seed_rank_epoch(seed: int, epoch: int) -> None:
    """Under torchrun, a torch RNG stream per (seed, epoch, rank).

    Without it every rank would draw the same dropout masks (the same seed everywhere), and a
    resumed job repeats an uninterrupted one exactly because the stream depends on the epoch only.
    """
    entropy = np.random.SeedSequence([int(seed), int(epoch), rank()]).generate_state(1)[0]
    torch.manual_seed(int(entropy))



@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the body first, then the other ranks do (a no-op outside torchrun).

    For shared files that are built once and read by every rank (the tiny BERT, the report
    embedding cache): rank 0 builds them while the others wait, and the others then find them
    complete and only read them back.
    """
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def teardown() -> None:
    """Destroy the process group if one is running (safe to call twice)."""
    if is_initialized():
        torch.distributed.destroy_process_group()


@contextmanager
def distributed_session(backend: str | None = None) -> Iterator[bool]:
    """``with distributed_session() as distributed:`` initialise from torchrun's env, always tear down."""
    started = init_distributed(backend)
    try:
        yield started
    finally:
        if started:
            teardown()
