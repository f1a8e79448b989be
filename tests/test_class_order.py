"""Class-ordered data (an image folder is read class by class): every "N training images" is a random sample."""

import copy
import logging

import torch

from methods.sanp import SANP, start_losses
from prunebench.api import RunContext
from prunebench.backbones import build_backbone
from prunebench.cli_models import warn_if_below
from prunebench.data import Dataset, _with_validation_split, make_synthetic
from prunebench.train import recalibrate_bn, set_seed


def _sorted_and_shuffled(n_train=2048, num_classes=4):
    """The same synthetic training set twice: sorted by class (as an image folder loads) and shuffled."""
    train_x, train_y, test_x, test_y, classes = make_synthetic(n_train=n_train, n_test=64, num_classes=num_classes,
                                                                size=16)
    by_class, shuffled = train_y.argsort(stable=True), torch.randperm(n_train, generator=torch.Generator().manual_seed(1))

    def dataset(order):
        scaled = train_x.float() / 255
        return Dataset("synthetic", train_x[order], train_y[order], train_x[:0], train_y[:0], test_x, test_y, classes,
                       tuple(scaled.mean(dim=(0, 2, 3)).tolist()), tuple(scaled.std(dim=(0, 2, 3)).tolist()))

    return dataset(by_class), dataset(shuffled)


def _net(data):
    set_seed(0)
    return build_backbone("resnet8", data.num_classes, data.in_channels, width=8).eval()


def test_the_split_keeps_no_class_order():
    data, _ = _sorted_and_shuffled()
    split = _with_validation_split("synthetic", data.train_x, data.train_y, data.test_x, data.test_y, data.classes, 256)
    assert set(split.train_y[:64].tolist()) == set(range(4)) and set(split.val_y[:64].tolist()) == set(range(4))
    assert sorted(split.train_y.tolist() + split.val_y.tolist()) == sorted(data.train_y.tolist())


def test_recalibrated_statistics_do_not_depend_on_the_order():
    """A quarter of the images: the first quarter of the sorted set would be one class."""
    ordered, shuffled = _sorted_and_shuffled()
    stats = {}
    for name, data, images in (("ordered", ordered, 512), ("shuffled", shuffled, 512), ("all", shuffled, 2048)):
        net = _net(data)
        recalibrate_bn(net, data, images)
        stats[name] = torch.cat([m.running_mean for m in net.backbone_norms()])
    sampling = (stats["shuffled"] - stats["all"]).abs().max()  # what a random quarter of the images moves them
    assert (stats["ordered"] - stats["all"]).abs().max() < 3 * sampling


def test_sanp_start_loss_does_not_depend_on_the_order():
    """SANP's start losses (the cross-entropy logged beside lambda0, and the mean |s| lambda0 comes from) are measured
    on a random sample: class 0 favoured by the head, so one class's images would give a loss far from all classes'
    (the first 512 of the sorted set are all class 0)."""
    ordered, shuffled = _sorted_and_shuffled()
    method = SANP()
    hp = method.resolve_hp(None)
    losses = []
    for data in (ordered, shuffled):
        net = method._gated(_net(data), hp, RunContext())
        with torch.no_grad():
            net.fc.bias.copy_(torch.tensor([4.0, 0.0, 0.0, 0.0]))
        filters = sum(net.unit(u).out_channels for u in net.policy.gated_units)
        losses.append(start_losses(net, data, filters)[0])
    assert abs(losses[0] - losses[1]) < 0.1 * losses[1], losses


def test_a_test_accuracy_far_below_validation_is_logged(caplog):
    log = logging.getLogger("prunebench.test")
    with caplog.at_level(logging.WARNING, logger="prunebench.test"):
        assert warn_if_below("test", 0.691, 10_000, "validation", 0.850, 5_000, log)
        assert not warn_if_below("test", 0.845, 10_000, "validation", 0.850, 5_000, log)
    assert len(caplog.records) == 1 and "15.9 pt below validation" in caplog.text
