"""Which device a job runs on, once per process. Several visible GPUs: each job claims a free one with a lock
file, so parallel workflow jobs (bounded by `--resources gpu=N`) spread over the GPUs, not all on GPU 0."""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError

_held = []  # lock files stay open (and locked) for the life of the process


def deterministic_cuda() -> None:
    """cuDNN's deterministic kernels and no autotuning, and torch's deterministic algorithms where they exist (a
    warning, not an error, where an op has none: e.g. index_add_, which skip mode uses); see docs/cluster.md."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


@functools.cache
def pick_device(requested: str = "auto") -> str:
    """'auto': the only visible GPU (one a scheduler assigned), a free one among several, else the CPU; anything
    else as given. Cached: a process keeps its device (and its GPU's lock) for its whole life; on a GPU, the
    deterministic settings are made once."""
    device = _choose(requested)
    if device.startswith("cuda"):
        deterministic_cuda()
    return device


def _choose(requested: str) -> str:
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {requested} was asked for (the config's `device` or --device) but no CUDA GPU is "
                        "visible here: run on a GPU node, or set `device: auto` (or --device cpu) to run on the CPU")
    if requested != "auto":
        return requested
    if not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    if count == 1:
        return "cuda:0"
    # Locks are named by the physical GPU (CUDA_VISIBLE_DEVICES=2,3 makes GPU 2 visible as cuda:0)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    names = visible if len(visible) == count else [str(i) for i in range(count)]
    lock_dir = Path(os.environ.get("PRUNEBENCH_LOCK_DIR", tempfile.gettempdir()))
    for index, name in enumerate(names):
        handle = open(lock_dir / f"prunebench-gpu{name}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        return f"cuda:{index}"
    # More jobs than GPUs (no --resources gpu limit): share, spread by process id.
    return f"cuda:{os.getpid() % count}"
