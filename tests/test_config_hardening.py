"""Config defects of the second hardening round, each a test: a required key of the wrong
type, NaN/inf numbers, ``--nproc`` spellings and values, the config checked once before
torchrun starts, ``mlcore check``, and the best epoch's metrics kept across a resume."""
from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import run_cli, tiny_config, write_yaml
from mlcore.cli.main import main, parser


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def clean_error(capsys, argv, *needles):
    code, out, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err, (code, err)
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture
def cfg(tmp_path):
    return write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))


def test_a_required_key_of_the_wrong_type_is_a_config_error(capsys, tmp_path, cfg):
    clean_error(capsys, ["train", cfg, "--set", "dataset={name: voc2012, root: 5}"],
                "dataset.root: expected a string, got 5")
    clean_error(capsys, ["check", cfg, "--set", "dataset={name: listfile, root: [a]}"], "dataset.root")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e999", ".NaN"])
def test_nan_and_inf_are_refused_wherever_a_number_is_expected(capsys, cfg, value):
    clean_error(capsys, ["train", cfg, "--set", f"optimizer.lr={value}"], "optimizer.lr: expected a finite number")
    clean_error(capsys, ["check", cfg, "--set", f"train.grad_clip={value}"], "train.grad_clip: expected a finite")
    clean_error(capsys, ["check", cfg, "--set", f"data.mean=[0.5, {value}, 0.5]"], "data.mean: item 1: expected a finite")
    clean_error(capsys, ["check", cfg, "--set", f"loss={{name: focal, gamma: {value}}}"], "loss.gamma")


def test_nproc_spellings_and_values(capsys, cfg):
    from mlcore.cli.train import torchrun_command

    args = parser().parse_args(["train", str(cfg), "--nproc=2", "--set", "train.epochs=1", "--resume"])
    cmd = torchrun_command(args)
    assert "--nproc_per_node=2" in cmd and "--nproc=2" not in cmd and "--nproc" not in cmd[cmd.index("mlcore"):]
    assert cmd[cmd.index("mlcore") + 1:] == ["train", str(cfg), "--set", "train.epochs=1", "--resume"]
    for bad in (["--nproc", "-1"], ["--nproc=0"], ["--nproc=two"]):
        with pytest.raises(SystemExit) as exit_:
            parser().parse_args(["train", str(cfg), *bad])
        assert exit_.value.code == 2
        assert "--nproc" in capsys.readouterr().err


def test_a_config_error_under_nproc_is_one_message_before_any_process_starts(tmp_path, cfg):
    proc = run_cli("train", cfg, "--nproc=2", "--set", "optimizer.lr=.nan")
    assert proc.returncode == 2 and proc.stderr.count("optimizer.lr") == 1, proc.stderr
    assert "torch.distributed" not in proc.stderr and "Traceback" not in proc.stderr


def test_check_prints_the_resolved_config_and_builds_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCORE_CACHE", str(tmp_path / "cache"))
    path = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))
    code, out, err = run(capsys, "check", path)
    assert code == 0 and "config ok" in err
    import yaml

    resolved = yaml.safe_load(out)
    assert resolved["model"]["name"] == "resnet18" and resolved["optimizer"]["backbone_lr_mult"] == 1.0
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache" / "shapes").exists()  # no data generated, none read


def test_check_finds_the_files_a_config_names(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    cfg = tiny_config(tmp_path / "run", dataset={"name": "voc2012", "root": str(tmp_path / "nowhere")},
                      model={"name": "resnet18", "pretrained": str(tmp_path / "w.pth"), "weights": str(tmp_path)})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    err = clean_error(capsys, ["check", path], "dataset.root: folder", "nowhere' does not exist",
                      "model.pretrained: file", "w.pth' does not exist", "model.weights:", "is a folder, not a file")
    assert err.count("\n  ") == 3  # all three at once
    clean_error(capsys, ["check", path, "--set", f"dataset.root={tmp_path / 'afile'}", "model.pretrained=null",
                         "model.weights=null"], "dataset.root:", "is a file, not a folder")
    clean_error(capsys, ["check", path, "--set", f"output_dir={tmp_path / 'afile'}"], "output_dir:", "is a file")


def test_the_best_epochs_metrics_survive_a_resume_without_improvement(tmp_path):
    # a monitor that never improves after the first epoch: the count of labels without
    # positives in the validation split is the same every epoch
    cfg = tiny_config(tmp_path / "run", early_stop=False)
    cfg["train"].update(epochs=1, monitor="num_labels_without_positives")
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert run_cli("train", path).returncode == 0
    first = json.loads((tmp_path / "run" / "result.json").read_text())
    os.remove(tmp_path / "run" / "result.json")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["best_metrics"]["mAP"] == pytest.approx(first["mAP"]) and ckpt["best_epoch"] == 1
    proc = run_cli("train", path, "--resume", "--set", "train.epochs=2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["best_epoch"] == 1 and result["mAP"] == pytest.approx(first["mAP"])
    assert result["ap_list"] == pytest.approx(first["ap_list"], nan_ok=True)


def test_huge_numbers_are_refused_before_they_reach_torch(capsys, cfg):
    clean_error(capsys, ["check", cfg, "--set", "train.seed=100000000000000000000"],
                "train.seed: expected an integer of at most 19 digits")
    clean_error(capsys, ["check", cfg, "--set", "data.scale_size=1000000000", "data.crop_size=32"],
                "data.scale_size: must be <= 16384")
    clean_error(capsys, ["check", cfg, "--set", "train.num_workers=1000000"], "train.num_workers: must be <= 256")
    clean_error(capsys, ["check", cfg, "--set", "train.dist_timeout=1e300"], "train.dist_timeout: must be <=")
