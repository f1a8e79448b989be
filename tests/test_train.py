from pathlib import Path

import pytest
import torch

from prunebench.api import RunContext, UserError, copy_backbone
from prunebench.backbones import build_backbone
from prunebench.train import TrainSpec, autocast_dtype, fit, lr_factor, native_bf16


def small_net(data):
    torch.manual_seed(0)
    return build_backbone("resnet8", data.num_classes, data.in_channels, width=4)


def test_schedules():
    spec = TrainSpec(schedule="step", milestones=[0.5, 0.75], gamma=0.1)
    assert [lr_factor(spec, s, 100) for s in (0, 49, 50, 80)] == pytest.approx([1, 1, 0.1, 0.01])
    cos = TrainSpec(schedule="cosine")
    assert lr_factor(cos, 0, 10) == 1 and lr_factor(cos, 5, 10) == pytest.approx(0.5)
    one = TrainSpec(schedule="onecycle", warmup_frac=0.2)
    assert lr_factor(one, 0, 100) == pytest.approx(0.04) and lr_factor(one, 20, 100) == pytest.approx(1.0)
    assert lr_factor(one, 99, 100) < 0.01


def test_spec_rejects_unknown_keys_and_values():
    with pytest.raises(UserError, match="unknown config key 'pretrain.epoch'; accepted"):
        TrainSpec.from_dict({"epoch": 3}, "pretrain")
    with pytest.raises(UserError, match="pretrain.schedule"):
        TrainSpec.from_dict({"schedule": "linear"}, "pretrain")
    with pytest.raises(UserError, match="pretrain.precision must be one of"):
        TrainSpec.from_dict({"precision": "fp16"}, "pretrain")


def test_precision_auto_follows_the_hardware_and_bf16_training_is_deterministic(tiny):
    cpu = torch.device("cpu")
    assert autocast_dtype(TrainSpec(precision="fp32"), cpu) is None
    assert autocast_dtype(TrainSpec(precision="bf16"), cpu) is torch.bfloat16
    assert autocast_dtype(TrainSpec(precision="auto"), cpu) is (torch.bfloat16 if native_bf16(cpu) else None)
    _, data = tiny
    runs = []
    for precision in ("bf16", "bf16", "fp32"):
        net = small_net(data)
        history = fit(net, data, TrainSpec(epochs=2, batch_size=64, lr=0.05, compile="off", precision=precision),
                      RunContext(seed=1))
        assert history[-1]["train_loss"] < history[0]["train_loss"]
        assert all(p.dtype == torch.float32 for p in net.state_dict().values() if p.is_floating_point())
        runs.append(net.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])  # a seed fixes a bf16 run too
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])  # and bf16 did run in bf16


def test_training_learns_and_is_deterministic(tiny):
    _, data = tiny
    spec = TrainSpec(epochs=3, batch_size=64, lr=0.05, compile="off")
    a, b = small_net(data), small_net(data)
    history = fit(a, data, spec, RunContext(seed=1))
    fit(b, data, spec, RunContext(seed=1))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tiny, tmp_path):
    _, data = tiny
    spec = TrainSpec(epochs=3, batch_size=64, lr=0.05, compile="off")
    full = small_net(data)
    fit(full, data, spec, RunContext(seed=2))

    interrupted = small_net(data)
    run = RunContext(seed=2, out_dir=tmp_path)
    stop = TrainSpec(**{**spec.__dict__, "epochs": 3})

    def crash(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, data, stop, run, name="job", on_epoch_start=crash)
    assert (tmp_path / "job.ckpt").exists()
    resumed = small_net(data)
    resumed_run = RunContext(seed=2, out_dir=tmp_path)
    history = fit(resumed, data, spec, resumed_run, name="job")
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert resumed_run.images == {"train": 3 * 192, "policy": 0}  # the epochs before the interruption count too
    assert all(torch.equal(x, y) for x, y in zip(full.state_dict().values(), resumed.state_dict().values()))
    assert not list(tmp_path.glob("*.tmp"))  # no partial files left behind


def test_a_checkpoint_of_another_job_is_not_resumed(tiny, tmp_path):
    _, data = tiny
    spec = TrainSpec(epochs=1, batch_size=64, lr=0.05, compile="off")
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))  # noqa: E731

    def other_init(width=4):
        torch.manual_seed(5)
        return build_backbone("resnet8", data.num_classes, data.in_channels, width=width)

    done = small_net(data)
    fit(done, data, spec, RunContext(seed=2, out_dir=tmp_path, identity="job-a"), name="stage")
    resumed = other_init()
    fit(resumed, data, spec, RunContext(seed=2, out_dir=tmp_path, identity="job-a"), name="stage")
    assert same(resumed, done)  # the same job picks up its finished checkpoint
    other = other_init()
    fit(other, data, spec, RunContext(seed=2, out_dir=tmp_path, identity="job-b"), name="stage")
    assert not same(other, done)  # another job trains afresh
    wider = other_init(width=8)  # same job name, another structure: trained, not a load error
    fit(wider, data, spec, RunContext(seed=2, out_dir=tmp_path, identity="job-a"), name="stage")


def test_an_epoch_can_be_a_random_subset(tiny):
    _, data = tiny
    spec = TrainSpec(epochs=1, batch_size=32, lr=0.05, compile="off", epoch_images=64)
    history = fit(small_net(data), data, spec, RunContext(seed=0))
    assert history[0]["images_per_s"] * history[0]["seconds"] == pytest.approx(64)


def test_the_loop_counts_the_images_trained_on(tiny, tmp_path):
    """Training and a separate controller's stage in their own counts; an artifact's counts join the run that
    loads it."""
    from prunebench.io import save_torch

    _, data = tiny
    run = RunContext(seed=0)
    fit(small_net(data), data, TrainSpec(epochs=2, batch_size=32, compile="off", epoch_images=64), run)
    fit(small_net(data), data, TrainSpec(epochs=1, batch_size=32, compile="off", epoch_images=96), run,
        counts_as="policy")
    assert run.images == {"train": 128, "policy": 96}
    assert run.validation and run.validation[-1][0] == "train" and 0 <= run.validation[-1][1] <= 1
    save_torch({"artifact": {"state": 1}, "images": {"train": 10, "policy": 5}}, tmp_path / "artifact.pt")
    later = RunContext(artifacts={"warm": tmp_path / "artifact.pt"})
    assert later.artifact("warm", lambda: None) == {"state": 1}
    assert later.images == {"train": 10, "policy": 5}


def test_a_checkpoint_from_more_gpus_resumes_on_fewer(monkeypatch):
    """The RNG states of 4 visible GPUs restored where 2 are visible: the first two, no IndexError."""
    from prunebench import train

    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.__setitem__(index, state))
    states = {"torch": torch.get_rng_state(), "python": __import__("random").getstate(),
              "numpy": __import__("numpy").random.get_state(), "cuda": [torch.full((4,), i, dtype=torch.uint8) for i in range(4)]}
    train._set_rng_states(states)
    assert sorted(restored) == [0, 1] and all(int(restored[i][0]) == i for i in (0, 1))


def test_jobs_spread_over_the_visible_gpus_and_keep_their_device(monkeypatch, tmp_path):
    """With four visible GPUs (CUDA_VISIBLE_DEVICES set by hand or a scheduler) each job claims a free one; a
    process asking again keeps its device instead of claiming another; one visible GPU is cuda:0."""
    from prunebench import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.setenv("PRUNEBENCH_LOCK_DIR", str(tmp_path))
    monkeypatch.setattr(devices, "_held", [])
    picked = []
    for _ in range(3):  # three jobs: a fresh cache stands for a fresh process (the locks of the others held)
        devices.pick_device.cache_clear()
        picked.append(devices.pick_device("auto"))
    assert picked == ["cuda:0", "cuda:1", "cuda:2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"prunebench-gpu{i}.lock" for i in (4, 5, 6)]
    assert [devices.pick_device("auto") for _ in range(3)] == ["cuda:2"] * 3  # the same process: its device
    assert torch.backends.cudnn.deterministic and torch.are_deterministic_algorithms_enabled()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    devices.pick_device.cache_clear()
    assert devices.pick_device("auto") == "cuda:0"
    for handle in devices._held:
        handle.close()
    devices.pick_device.cache_clear()
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


def test_precision_auto_is_bf16_on_a_gpu_with_native_bf16_only(monkeypatch):
    from prunebench.train import TrainSpec, autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation
                        and native)
    for native, expected in ((True, torch.bfloat16), (False, None)):
        assert autocast_dtype(TrainSpec(precision="auto"), torch.device("cuda:0")) == expected


def test_step_totals_read_back_in_batches_report_the_first_non_finite_step():
    """A GPU's losses are read every 50 steps: the sums equal one read per step, and a NaN names its own step."""
    from prunebench.train import Diverged, StepTotals

    losses = [0.5, 0.25, 0.125, float("nan"), 1.0]
    per_step = StepTotals(1, torch.device("cpu"))
    batched = StepTotals(1, torch.device("cpu"), every=50)
    for totals in (per_step, batched):
        loss_sum, correct = 0.0, 0.0
        with pytest.raises(Diverged) as err:
            for i, value in enumerate(losses):
                totals.add(i, torch.tensor(value), 4, torch.tensor(i))
                if totals.due(i == len(losses) - 1):
                    loss_sum, correct = totals.settle("stage", loss_sum, correct)
        assert err.value.record["step"] == 3 and err.value.record["loss"] == "nan"
    assert len(per_step.steps) == 1 and len(batched.steps) == 5  # read at the NaN's step / at the epoch's end
    fine = StepTotals(1, torch.device("cpu"), every=50)
    for i, value in enumerate(losses[:3]):
        fine.add(i, torch.tensor(value), 4, torch.tensor(2))
    assert fine.settle("stage", 0.0, 0.0) == (0.875 * 4, 6.0)


def test_bn_statistics_are_re_estimated_under_the_runs_augmentation(tiny):
    """The weights were trained on augmented images' statistics (on CIFAR-10's pad-4 crops, those of unaugmented
    images cost the dense ResNet-20 2.6 pt): the stem's re-estimated BN mean is that of the augmented images."""
    import dataclasses

    from prunebench.data import Normalizer
    from prunebench.train import recalibrate_bn

    backbone, data = tiny
    data = dataclasses.replace(data, augment_pad=6, augment_flip=False)  # 16-pixel images: most of a crop is zeros
    net = copy_backbone(backbone, "cpu").eval()
    recalibrate_bn(net, data, 256)
    stem, normalize = net.unit("stem").conv, Normalizer(data.mean, data.std, torch.device("cpu"))
    images = data.train_x[data.sample(256)]
    with torch.no_grad():
        means = {name: stem(normalize(x)).mean((0, 2, 3)) for name, x in
                 (("augmented", data.augmented(images, torch.Generator().manual_seed(9))), ("plain", images))}
    recalibrated = net.unit("stem").norm.running_mean
    assert (recalibrated - means["augmented"]).abs().max() < 0.2 * (means["plain"] - means["augmented"]).abs().max()


def test_training_stages_use_the_runs_augmentation_unless_they_set_their_own(tiny, monkeypatch):
    """A stage's augment_pad/flip default to the data's, which the config's pretrain section sets for the run."""
    import dataclasses

    import prunebench.train as train
    from prunebench.cli_models import _dataset
    from prunebench.config import load_config

    cfg = load_config(Path(__file__).parent.parent / "config" / "smoke.yaml")
    cfg["pretrain"] = {**cfg["pretrain"], "augment_pad": 3, "augment_flip": False}
    assert (_dataset(cfg).augment_pad, _dataset(cfg).augment_flip) == (3, False)
    backbone, data = tiny
    data, seen = dataclasses.replace(data, augment_pad=3, augment_flip=False), set()
    real = train.augment
    monkeypatch.setattr(train, "augment", lambda x, pad, flip, generator: seen.add((pad, flip)) or real(
        x, pad=pad, flip=flip, generator=generator))
    spec = {"epochs": 1, "epoch_images": 64, "batch_size": 32, "compile": "off"}
    fit(copy_backbone(backbone, "cpu"), data, TrainSpec.from_dict(spec), RunContext(seed=0))
    fit(copy_backbone(backbone, "cpu"), data, TrainSpec.from_dict({**spec, "augment_pad": 0}), RunContext(seed=0))
    assert seen == {(3, False), (0, False)}


def test_the_validation_runs_after_before_validation(tiny):
    """A method that draws its gating per batch sets the one validated: here a classifier that always says 0."""
    backbone, data = tiny
    net = copy_backbone(backbone)

    @torch.no_grad()
    def always_class_zero():
        net.fc.weight.zero_()
        net.fc.bias.copy_(torch.arange(net.fc.out_features, 0, -1, dtype=net.fc.bias.dtype))

    history = fit(net, data, TrainSpec(epochs=1, batch_size=64, lr=0.01), RunContext(seed=0),
                  before_validation=always_class_zero)
    assert history[-1]["val_acc"] == pytest.approx(float((data.val_y == 0).float().mean()))
