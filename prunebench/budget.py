"""One training budget for every method: each model's weight-training stages scaled to a number of images.

The config's `training_budget` is the images a trained model may train on after pretraining, its artifacts'
stages included (Blalock et al. 2020: compare under the same fine-tuning). A method declares its stages
(`Method.training_stages`, `Method.artifact_stages`); here every stage's images (epochs x images per epoch)
are multiplied by one factor, so the ratios between a method's stages stay as configured. An artifact is
shared by every budget of a method, so its stages take their share of the method's reference plan (the
plan at budget None); a model's own stages fill the rest. Policy-only stages (a separate controller's) are
not scaled: the summary's policy_images reports them beside the budget.
"""

from __future__ import annotations

import copy
import math

from .api import Method
from .errors import UserError
from .train import TrainSpec


def stage_images(stage: dict, train_size: int, where: str) -> int:
    """Images one run of a stage trains on: epochs x the whole batches of an epoch (epoch_images, or the
    whole training split), as the training loop counts them."""
    spec = TrainSpec.from_dict(stage, where)
    per_epoch = min(spec.epoch_images, train_size) if spec.epoch_images else train_size
    return spec.epochs * max(per_epoch // spec.batch_size, 1) * spec.batch_size


def _scaled(stage: dict, images: float, train_size: int, where: str) -> dict:
    """The stage with its epochs and images per epoch set to train on `images`: whole epochs of at most the
    training split each (a short stage keeps a fresh random subset per epoch, a long one its epochs), whole batches."""
    if round(images) == 0:
        return {**stage, "epochs": 0}
    batch = TrainSpec.from_dict(stage, where).batch_size
    full = train_size // batch * batch
    epochs = max(1, math.ceil(images / full - 0.01))  # within 1 % of whole epochs: whole epochs (no split)
    batches = min(round(images / epochs / batch), full // batch)
    if batches < 1:
        raise UserError(f"training_budget: {where} would train on {images / epochs:.0f} images an epoch, fewer than "
                        f"its batch size {batch}; raise training_budget or lower the stage's batch_size")
    per_epoch = batches * batch
    return {**stage, "epochs": epochs, "epoch_images": per_epoch if per_epoch < full else 0}


def shared_stages(method: Method) -> dict[str, int]:
    """The stages of the method's artifacts (each runs once per model that uses it)."""
    return {s: 1 for stages in method.artifact_stages.values() for s in stages}


def check_declared(method: Method, hp: dict) -> dict[str, int]:
    """The method's reference plan; one clear error where it declares no training stages."""
    reference = method.training_stages(hp, None)
    if reference is None:
        raise UserError(f"config key 'training_budget': {method.name} does not declare its training stages "
                        f"(Method.training_stages), so it cannot be held to a training budget; remove "
                        f"training_budget or declare them (docs/adding-a-method.md)")
    return reference


def matched_hp(method: Method, hp: dict, train_size: int, images: int, budget=None) -> dict:
    """`hp` with the method's stages scaled so that a model at `budget` trains on `images` images, its
    artifacts' share included (budget None: only the artifacts' stages, as a prepare job needs them)."""
    def size(stages: dict, source: dict) -> int:
        return sum(m * stage_images(source[s], train_size, f"methods.{method.name}.hp.{s}") for s, m in stages.items())

    def scale(stages: dict, factor: float) -> None:
        for s in stages:
            out[s] = _scaled(hp[s], factor * size({s: 1}, hp), train_size, f"methods.{method.name}.hp.{s}")

    reference = check_declared(method, hp)
    shared = shared_stages(method)
    if not reference and not shared:
        return hp  # it trains no weights (dense, random_drop)
    planned = size(shared, hp) + size(reference, hp)
    if planned == 0:
        raise UserError(f"{method.name}: its training stages train on no images; give them epochs")
    out = copy.deepcopy(hp)
    scale(shared, images / planned)
    if budget is not None:
        own = {s: m for s, m in method.training_stages(hp, budget).items() if m}
        if own:
            scale(own, (images - size(shared, out)) / size(own, hp))
    return out


def images_for(cfg: dict, method: Method) -> int | None:
    """The training budget of `method`'s models in images (None: none set): the config's, times k for an entry
    named <method>_<k>x."""
    images = cfg.get("training_budget")
    return None if images is None else images * method.budget_multiple
