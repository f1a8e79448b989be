import json

import pandas as pd
import pytest
import yaml

from prunebench.cli import main
from prunebench.errors import UserError

SMOKE = {"data": {"name": "synthetic", "val_size": 32,
                  "synthetic": {"n_train": 256, "n_test": 64, "num_classes": 4, "size": 16}},
         "backbone": {"names": ["resnet8"], "width": 8},
         "pretrain": {"epochs": 1, "batch_size": 64, "lr": 0.05},
         "methods": {"uniform_width": {"train_budgets": [0.5], "hp": {"finetune": {"epochs": 1, "batch_size": 64}}}},
         "evaluate": {"batch_size": 32},
         "latency": {"batch_sizes": [1, 4], "warmup": 1, "repeats": 2}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "cfg.yaml").write_text(yaml.safe_dump(SMOKE))
    assert main(["pretrain", "--config", str(root / "cfg.yaml"), "--out", str(root / "pre/model.pt"),
                 "--metrics", str(root / "pre/metrics.json")]) == 0
    return root


def test_pretrain_train_evaluate_latency(workdir, capsys):
    cfg = str(workdir / "cfg.yaml")
    metrics = json.loads((workdir / "pre/metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["seed"] == 0 and metrics["config_hash"]
    assert main(["train", "--config", cfg, "--method", "uniform_width", "--budget", "0.5",
                 "--backbone-model", str(workdir / "pre/model.pt"), "--out", str(workdir / "uw/model.pt")]) == 0
    assert not list((workdir / "uw").glob("*.ckpt")), "finished jobs leave no checkpoints"
    assert main(["evaluate", "--config", cfg, "--model", str(workdir / "uw/model.pt"),
                 "--records", str(workdir / "uw/eval.parquet"), "--summary", str(workdir / "uw/eval.json")]) == 0
    summary = json.loads((workdir / "uw/eval.json").read_text())
    records = pd.read_parquet(workdir / "uw/eval.parquet")
    assert len(records) == summary["n"] == 64
    assert 0.2 < summary["macs_frac"] < 0.8 and summary["method"] == "uniform_width"
    assert {"label", "prediction", "macs", "backbone_macs", "controller_macs", "blocks_executed"} <= set(records)
    assert main(["latency", "--config", cfg, "--model", str(workdir / "uw/model.pt"),
                 "--out", str(workdir / "uw/latency.json")]) == 0
    lat = json.loads((workdir / "uw/latency.json").read_text())
    assert set(lat["batches"]) == {"1", "4"} and lat["threads"] >= 1 and lat["torch"]
    assert lat["batches"]["1"]["model_ms"] > 0
    assert main(["methods"]) == 0
    assert "random_drop" in capsys.readouterr().out


def test_several_budgets_in_one_process_equal_one_process_each(workdir):
    cfg = str(workdir / "cfg.yaml")
    assert main(["train", "--config", cfg, "--method", "random_drop", "--budget", "3",
                 "--backbone-model", str(workdir / "pre/model.pt"), "--out", str(workdir / "rd/model.pt")]) == 0
    model = str(workdir / "rd/model.pt")
    assert main(["evaluate", "--config", cfg, "--model", model, "--budget", "1", "3", "--out-dir", str(workdir / "rd/eval")]) == 0
    for budget in ("1", "3"):
        assert main(["evaluate", "--config", cfg, "--model", model, "--budget", budget,
                     "--summary", str(workdir / f"rd/alone{budget}.json")]) == 0
        together = json.loads((workdir / f"rd/eval/{budget}.json").read_text())
        alone = json.loads((workdir / f"rd/alone{budget}.json").read_text())
        assert together == alone and together["blocks_max"] == int(budget)
        assert (workdir / f"rd/eval/{budget}.parquet").exists()
    assert main(["latency", "--config", cfg, "--model", model, "--budget", "1", "3", "--out-dir", str(workdir / "rd/lat")]) == 0
    assert sorted(p.name for p in (workdir / "rd/lat").iterdir()) == ["1.json", "3.json"]
    assert main(["gather", "--evals", str(workdir / "rd/eval"), "--latency", str(workdir / "rd/lat"),
                 "--out-dir", str(workdir / "rd/tables")]) == 0
    assert len(pd.read_csv(workdir / "rd/tables/summary.csv")) == 2
    assert main(["evaluate", "--config", cfg, "--model", model, "--budget", "1", "3", "--summary", "x.json"]) == 2


def test_errors_are_one_line(workdir, capsys):
    cfg = str(workdir / "cfg.yaml")
    code = main(["train", "--config", cfg, "--method", "nope", "--budget", "1",
                 "--backbone-model", str(workdir / "pre/model.pt"), "--out", str(workdir / "x.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "unknown method 'nope'" in err
    code = main(["train", "--config", cfg, "--method", "random_drop", "--budget", "99",
                 "--backbone-model", str(workdir / "pre/model.pt"), "--out", str(workdir / "x.pt")])
    assert code == 2 and "out of range" in capsys.readouterr().err
    code = main(["evaluate", "--config", cfg, "--model", str(workdir / "missing.pt"), "--summary", "s.json"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    (workdir / "broken.pt").write_bytes(b"garbage")
    code = main(["evaluate", "--config", cfg, "--model", str(workdir / "broken.pt"), "--summary", "s.json"])
    assert code == 2 and "truncated" in capsys.readouterr().err
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMOKE, "pretrain": {"epochz": 1}}))
    code = main(["pretrain", "--config", str(bad), "--out", str(workdir / "x.pt")])
    assert code == 2 and "pretrain.epochz" in capsys.readouterr().err
    code = main(["gather", "--evals", str(workdir / "no_eval_dir"), "--out-dir", str(workdir / "tables")])
    assert code == 2 and "no_eval_dir does not exist" in capsys.readouterr().err
    for args in (["--debug", "gather"], ["gather", "--debug"]):  # before the verb, or appended as the hint says
        with pytest.raises(UserError, match="no_eval_dir"):
            main([*args, "--evals", str(workdir / "no_eval_dir"), "--out-dir", str(workdir / "tables")])


def test_killed_pretraining_resumes_from_its_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cfg = {**SMOKE, "pretrain": {"epochs": 40, "batch_size": 64, "lr": 0.05, "compile": "off"}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "pre" / "model.pt"
    cmd = [sys.executable, "-m", "prunebench.cli", "pretrain", "--config", str(tmp_path / "cfg.yaml"),
           "--threads", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = tmp_path / "pre" / "model.pt.pretrain.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not out.exists(), "killed before finishing: a checkpoint, no output"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after epoch" in done.stderr
    assert out.exists() and not ckpt.exists()


def test_keep_freed_memory_sets_glibc_thresholds_or_reports_it_could_not():
    import ctypes
    import sys

    from prunebench.memory import keep_freed_memory

    took = keep_freed_memory(64 << 20)
    if sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallopt"):
        assert took
    else:
        assert not took


def test_a_config_that_asks_for_a_gpu_refuses_to_start_without_one(tmp_path, capsys, monkeypatch):
    from prunebench import devices

    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    devices.pick_device.cache_clear()
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump({**SMOKE, "device": "cuda"}))
    args = ["pretrain", "--config", str(tmp_path / "gpu.yaml"), "--out", str(tmp_path / "model.pt")]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "device cuda was asked for" in err and "set `device: auto`" in err and "Traceback" not in err
    assert not (tmp_path / "model.pt").exists()
    devices.pick_device.cache_clear()
    assert main([*args, "--device", "cpu"]) == 0  # the flag overrides the config
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**SMOKE, "device": "gpu"}))
    assert main(["pretrain", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "m.pt")]) != 0
    assert "config key 'device' must be auto, cpu, cuda or cuda:N" in capsys.readouterr().err
