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
    with pytest.raises(UserError, match="'latency.repeats' must be a positive integer, or one per"):
        validate({"latency": {"batch_sizes": [1, 64], "repeats": [30]}})
    assert validate({"latency": {"batch_sizes": [1, 64], "repeats": [30, 10]}})["latency"]["repeats"] == [30, 10]


@pytest.mark.parametrize("name", ["config.yaml", "cifar10.yaml", "smoke.yaml", "paper-cifar10.yaml"])
def test_shipped_configs_are_valid(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).parent.parent / "config" / name)
    # LC-Net from scratch (the paper's 270-epoch schedule) runs in the smoke and paper configs only
    omitted = {"lcnet_scratch", "lcnet_scratch_seq"} if name in ("config.yaml", "cifar10.yaml") else set()
    larger = {m for m in cfg["methods"] if get_method(m).budget_multiple > 1}  # a method at k x the training budget
    assert set(cfg["methods"]) - larger == set(registered_methods()) - omitted


def test_the_cifar10_default_differs_from_the_default_only_in_data_pretraining_and_training_budget():
    """Every method, knob value and hyperparameter of the second default is the first's: the recipes must transfer."""
    from pathlib import Path

    fashion, cifar = (load_config(Path(__file__).parent.parent / "config" / n) for n in ("config.yaml", "cifar10.yaml"))
    differ = {k for k in fashion if fashion[k] != cifar[k]}
    assert differ == {"data", "pretrain", "training_budget"}
    assert (fashion["data"]["name"], cifar["data"]["name"]) == ("fashion_mnist", "cifar10")


def test_block_budgets_may_be_shares_of_the_blocks_resolved_per_backbone():
    from prunebench.config import method_budgets

    dlp = get_method("dlp")
    r110, r20 = build_backbone("resnet110", 10, 3), build_backbone("resnet20", 10, 3)
    assert [dlp.check_budget(r110, b) for b in ("70%", "20/54", "10%", "100%")] == [38, 20, 6, 54]
    assert [dlp.check_budget(r20, b) for b in ("70%", "20/54", "10%", "100%")] == [7, 4, 1, 9]
    with pytest.raises(UserError, match="a fraction of blocks, but its knob is 'width'"):
        get_method("uniform_width").check_budget(r20, "50%")
    with pytest.raises(UserError, match="out of range"):
        dlp.check_budget(r20, "150%")
    cfg = validate({"backbone": {"names": ["resnet20", "resnet56"]},
                    "methods": {"dlp": {"train_budgets": ["100%"], "eval_budgets": [3, "70%", "7/9"]}}})
    assert cfg["methods"]["dlp"]["eval_budgets"] == [3, "70%", "7/9"]  # kept as written, resolved per backbone
    assert method_budgets(cfg, "dlp", "resnet20") == ([9], [3, 7])  # 70 % and 7/9 of 9 blocks are both 7
    assert method_budgets(cfg, "dlp", "resnet56") == ([27], [3, 19, 21])


def test_backbone_options_per_backbone_and_resnet18():
    from prunebench.config import backbone_spec

    cfg = validate({"backbone": {"names": ["resnet20", "resnet18"], "shortcut": {"resnet20": "pad", "resnet18": "conv"},
                                 "width": {"resnet20": 16, "resnet18": 64}}})
    assert backbone_spec(cfg, "resnet18") == {"name": "resnet18", "shortcut": "conv", "width": 64}
    assert backbone_spec(cfg, "resnet20")["shortcut"] == "pad"
    with pytest.raises(UserError, match="backbone.width' maps backbone names.*resnet18"):
        validate({"backbone": {"names": ["resnet20", "resnet18"], "width": {"resnet20": 16}}})
    net = build_backbone("resnet18", 10, 3, shortcut="conv", width=64)
    assert net.num_blocks == 8 and [b.out_channels for b in net.blocks[::2]] == [64, 128, 256, 512]
    from prunebench.flops import Accountant

    assert Accountant(net, (3, 32, 32)).dense_macs == pytest.approx(555.42e6, rel=1e-4)  # METHODS.md: ~555M
    with pytest.raises(ValueError, match="unknown backbone 'resnet22'"):
        build_backbone("resnet22", 10, 3)
