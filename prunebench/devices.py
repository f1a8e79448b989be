"""Which device a job runs on. Several local GPUs: each job claims a free one with a lock file,
so parallel workflow jobs (bounded by `--resources gpu=N`) spread over the GPUs, not all on GPU 0."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import torch

_held = []  # lock files stay open (and locked) for the life of the process


def pick_device(requested: str = "auto") -> str:
    """'auto': the only/assigned GPU, a free one among several, else the CPU; anything else as given."""
    if requested != "auto":
        return requested
    if not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    # A scheduler that sets CUDA_VISIBLE_DEVICES (Slurm does) has already chosen for us.
    if count == 1 or os.environ.get("CUDA_VISIBLE_DEVICES"):
        return "cuda:0"
    lock_dir = Path(os.environ.get("PRUNEBENCH_LOCK_DIR", tempfile.gettempdir()))
    for index in range(count):
        handle = open(lock_dir / f"prunebench-gpu{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        return f"cuda:{index}"
    # More jobs than GPUs (no --resources gpu limit): share, spread by process id.
    return f"cuda:{os.getpid() % count}"
