import sys
import textwrap

import pytest

from prunebench.api import UserError, get_method, registered_methods
from prunebench.backbones import build_backbone
from prunebench.config import load_config, validate


def test_builtins_are_registered_through_entry_points():
    eps = registered_methods()
    assert {"dense", "random_drop", "uniform_width"} <= set(eps)
    assert eps["random_drop"].value.startswith("prunebench.methods.")
    assert get_method("random_drop").test_time_knob


def test_unknown_method_lists_registered_ones():
    with pytest.raises(UserError, match="unknown method 'nope'.*dense.*random_drop"):
        get_method("nope")


def test_hyperparameters_and_budgets_are_validated():
    m = get_method("uniform_width")
    with pytest.raises(UserError, match="unknown hyperparameter.*lr.*accepted: finetune"):
        m.resolve_hp({"lr": 0.1})
    assert m.resolve_hp({"finetune": {"epochs": 5}})["finetune"] == {"epochs": 5, "lr": 0.01, "schedule": "cosine"}
    net = build_backbone("resnet20", 10, 3)
    with pytest.raises(UserError, match=r"accepts values in \[1, 9\]"):
        get_method("random_drop").check_budget(net, 10)
    with pytest.raises(UserError, match="not a number"):
        get_method("uniform_width").check_budget(net, "half")
    assert get_method("random_drop").check_budget(net, "4") == 4


def test_third_party_plugin_registers_without_editing_the_harness(tmp_path, monkeypatch):
    pkg = tmp_path / "my_plugin.py"
    pkg.write_text(textwrap.dedent("""
        from prunebench.methods.baselines import RandomDrop

        class EveryOther(RandomDrop):
            name = "every_other"
    """))
    dist = tmp_path / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[prunebench.methods]\nevery_other = my_plugin:EveryOther\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "every_other" in registered_methods()
    assert get_method("every_other").knob == "blocks"
    cfg = validate({"methods": {"every_other": {"train_budgets": [9], "eval_budgets": [3]}}})
    assert cfg["methods"]["every_other"]["eval_budgets"] == [3]
    sys.modules.pop("my_plugin", None)


def test_config_errors_name_the_key_path():
    with pytest.raises(UserError, match="unknown config key 'pretrain.epoch'"):
        validate({"pretrain": {"epoch": 3}})
    with pytest.raises(UserError, match="unknown config key 'data.nmae'"):
        validate({"data": {"nmae": "x"}})
    with pytest.raises(UserError, match="unknown config key 'methods.dense.budgets'"):
        validate({"methods": {"dense": {"budgets": [1]}}})
    with pytest.raises(UserError, match="unknown method 'dlpx'.*registered methods"):
        validate({"methods": {"dlpx": {}}})
    with pytest.raises(UserError, match=r"budget -1 is out of range"):
        validate({"methods": {"uniform_width": {"train_budgets": [-1]}}})
    with pytest.raises(UserError, match="knob is set at train time"):
        validate({"methods": {"uniform_width": {"train_budgets": [0.5], "eval_budgets": [0.5]}}})
    with pytest.raises(UserError, match="unknown config key 'methods.blockdrop.hp.curriculum.epochz'"):
        validate({"methods": {"blockdrop": {"train_budgets": [1], "hp": {"curriculum": {"epochz": 3}}}}})


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper-cifar10.yaml"])
def test_shipped_configs_are_valid(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).parent.parent / "config" / name)
    # LC-Net from scratch (the paper's 270-epoch schedule) runs in the smoke and paper configs only
    omitted = {"lcnet_scratch", "lcnet_scratch_seq"} if name == "config.yaml" else set()
    assert set(cfg["methods"]) == set(registered_methods()) - omitted
