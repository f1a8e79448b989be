"""One training budget for every method: stages scaled to it, ratios kept, artifacts' share fixed, counts measured."""

import pytest

from prunebench.api import RunContext, UserError, get_method
from prunebench.budget import matched_hp, shared_stages, stage_images
from prunebench.config import validate


def _planned(method, hp, n, budget) -> int:
    """Images a model at `budget` trains on under `hp`: its artifacts' stages once, its own as often as they run."""
    shared = sum(stage_images(hp[s], n, s) for s in shared_stages(method))
    return shared + sum(m * stage_images(hp[s], n, s) for s, m in method.training_stages(hp, budget).items())


@pytest.mark.parametrize("name, budgets", [("uniform_width", [0.5]), ("rnp", [-0.01]), ("slimming", [0.3, 0.8]),
                                           ("sanp", [0.3, 0.7]), ("sanp_fixed_k", [0.5]), ("fbs", [0.75, 0.5, 0.25]),
                                           ("dlp", [9]), ("blockdrop", [1.0])])
def test_every_budget_of_a_method_trains_on_the_configured_images(name, budgets):
    method = get_method(name)
    hp = method.resolve_hp(None)
    for budget in budgets:
        matched = matched_hp(method, hp, 55000, 82500, budget)
        assert _planned(method, matched, 55000, budget) == pytest.approx(82500, rel=0.01)


def test_stage_ratios_are_kept_and_an_artifact_has_one_size_for_every_budget():
    sanp = get_method("sanp_fixed_k")
    hp = sanp.resolve_hp({"warmup": {"epochs": 1, "epoch_images": 10000}, "finetune": {"epochs": 3, "epoch_images": 15000}})
    matched = matched_hp(sanp, hp, 55000, 110000, 0.5)
    assert stage_images(matched["finetune"], 55000, "f") == pytest.approx(4.5 * stage_images(matched["warmup"], 55000, "w"), rel=0.01)
    fbs = get_method("fbs")
    hp = fbs.resolve_hp(None)
    shares = {b: stage_images(matched_hp(fbs, hp, 55000, 55000, b)["full_density"], 55000, "d") for b in (0.75, 0.25)}
    assert shares[0.75] == shares[0.25] == stage_images(matched_hp(fbs, hp, 55000, 55000)["full_density"], 55000, "d")


def test_the_training_loop_counts_the_budget(tiny):
    """Measured, not computed: the images the loop trained on, the artifact's included, match the budget."""
    backbone, data = tiny
    n = len(data.train_y)
    for name, budget in (("uniform_width", 0.5), ("sanp", 0.5)):
        method = get_method(name)
        hp = matched_hp(method, method.resolve_hp({s: {"batch_size": 32} for s in ("finetune", "warmup") if s in method.hyperparameters}), n, 3 * n, budget)
        run = RunContext(seed=0)
        method.train(backbone, data, budget, hp, run)
        assert run.images["train"] == pytest.approx(3 * n, rel=0.1)


def test_a_larger_budget_entry_is_its_method_at_k_times():
    method = get_method("uniform_width_4x")
    assert (method.name, method.budget_multiple, type(method).name) == ("uniform_width_4x", 4, "uniform_width")
    for name in ("dlp_oracle_2x", "nonesuch_4x", "uniform_width_0x"):  # a derived method trains nothing
        with pytest.raises(UserError, match="unknown method"):
            get_method(name)


def test_bad_training_budgets_are_one_clear_error():
    for bad in (0, -5, 1.5, "lots", True):
        with pytest.raises(UserError, match="training_budget"):
            validate({"training_budget": bad})
    with pytest.raises(UserError, match="fewer than its batch size"):
        matched_hp(get_method("uniform_width"), get_method("uniform_width").resolve_hp(None), 55000, 50, 0.5)


def test_a_method_without_declared_stages_cannot_be_held_to_a_budget(monkeypatch):
    from prunebench.methods.baselines import UniformWidth

    monkeypatch.setattr(UniformWidth, "training_stages", lambda self, hp, budget: None)
    with pytest.raises(UserError, match="does not declare its training stages"):
        validate({"training_budget": 1000, "methods": {"uniform_width": {"train_budgets": [0.5]}}})
    validate({"methods": {"uniform_width": {"train_budgets": [0.5]}}})  # without a budget it trains as configured


def test_the_claims_schedule_counts_the_stages_as_trained():
    """The schedule behind a result: each stage's passes over the training split under the scaled hp the model
    carries, not the config's epochs (a stage of 2 epochs scaled to half an epoch reads 0.5)."""
    from prunebench.cli_models import _epochs

    cfg = validate({"training_budget": 27500, "pretrain": {"epochs": 3}, "methods": {"sanp": {"train_budgets": [0.5]}}})
    sanp = get_method("sanp")
    hp = matched_hp(sanp, cfg["methods"]["sanp"]["hp"], 55000, 27500, 0.5)
    epochs = _epochs(cfg, sanp, {"hp": hp}, 55000)
    assert epochs["pretrain"] == 3
    assert epochs["warmup"] + epochs["finetune"] == pytest.approx(0.5, rel=0.01)  # the budget: half an epoch
