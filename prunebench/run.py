"""The run context handed to every method: seed, device, output folder, logging, checkpoints, artifacts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .backbones import GatedResNet
from .errors import UserError


@dataclass
class RunContext:
    """What a method needs besides its inputs: seed, device, an output folder, logging, progress."""

    seed: int = 0
    device: str = "cpu"
    out_dir: Path | None = None
    progress: bool | None = None   # None: a bar only when stderr is a terminal
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prunebench"))
    checkpoints: set = field(default_factory=set)
    artifacts: dict = field(default_factory=dict)  # name -> path of a precomputed artifact
    identity: str = ""  # what the job computes (method, budget, hp): checkpoints of another are not resumed
    backbone: Path | None = None  # the pretrained backbone's model file (a derived control may run it)
    # Images trained on so far, counted by the training loop: "train" for stages that update weights the
    # evaluated model carries, "policy" for a separate controller's own stage (imitation, curriculum, Q-updates).
    images: dict = field(default_factory=lambda: {"train": 0, "policy": 0})
    validation: list = field(default_factory=list)  # (stage, validation accuracy) at each stage's end
    precision: dict = field(default_factory=dict)  # stage name -> the precision its training steps ran in

    def count_images(self, counts: dict) -> None:
        """Add another stage's (an artifact's) image counts to this run's."""
        for kind, n in counts.items():
            self.images[kind] = self.images.get(kind, 0) + int(n)

    def pretrained_model(self) -> GatedResNet:
        """The dense pretrained backbone the parent method started from (derived methods' controls)."""
        if self.backbone is None:
            raise ValueError("this step needs the pretrained backbone: pass --backbone-model")
        return torch.load(self.backbone, map_location="cpu", weights_only=False)["model"]

    def artifact(self, name: str, compute):
        """A method's per-backbone precomputation: loaded from the workflow's output if given (its training
        images counted as this run's), else computed here by `compute()`."""
        if name not in self.artifacts:
            return compute()
        blob = torch.load(self.artifacts[name], map_location="cpu", weights_only=False)
        self.count_images(_counts(blob, self.artifacts[name]))
        return blob["artifact"]

    def checkpoint(self, name: str) -> Path | None:
        """Path of a resumable checkpoint in the output folder (None: no checkpoints)."""
        if self.out_dir is None:
            return None
        path = Path(self.out_dir) / f"{name}.ckpt"
        self.checkpoints.add(path)
        return path

    def remove_checkpoints(self) -> None:
        """Once the job's output is safely written, its checkpoints are no longer needed."""
        for path in self.checkpoints:
            path.unlink(missing_ok=True)
        self.checkpoints.clear()


def _counts(blob: dict, path) -> dict:
    """The training-image counts an input file carries (one clear error for a file written before they were)."""
    if "images" not in blob:
        raise UserError(f"{path} carries no count of the images it was trained on (written by an older prunebench): "
                        f"delete it and re-run the job that writes it")
    return blob["images"]
