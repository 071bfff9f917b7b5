"""Configs: YAML reading, _base_ composition, --set, and every kind of problem reported."""
from __future__ import annotations

import pytest
import yaml

from conftest import tiny_config, write_yaml
from mlcore.config import compose, load_config, merge, parse_set
from mlcore.errors import ConfigError


def problems_of(cfg, overrides=()):
    with pytest.raises(ConfigError) as err:
        load_config(cfg, overrides)
    return err.value.problems


def test_minimal_config_gets_defaults(tmp_path):
    cfg = load_config({"dataset": "shapes", "model": "resnet18"})
    assert cfg.loss.name == "bce" and [m.name for m in cfg.metrics] == ["map", "prf"]
    assert cfg.optimizer.name == "adam" and cfg.scheduler.name == "plateau"
    assert cfg.train.checkpoint_every == 0 and cfg.data.train_split == "train"
    assert {h.name for h in cfg.hooks} == {"early_stop", "tensorboard", "progress"}
    resolved = cfg.resolved()
    assert resolved["model"] == {"name": "resnet18", "pretrained": None, "weights": None, "weights_classes": None,
                                 "dropout": 0.0,
                                 "freeze": "none"}
    assert resolved["optimizer"] == {"name": "adam", "backbone_lr_mult": 1.0, "lr": 1e-4, "weight_decay": 0.0,
                                     "betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False}
    assert resolved["scheduler"]["warmup_epochs"] == 0 and resolved["scheduler"]["monitor"] == "mAP"
    assert resolved["early_stop"] == {"monitor": "mAP", "patience": 5, "min_delta": 0.0, "mode": "max"}
    assert yaml.safe_load(cfg.to_yaml()) == resolved  # plain YAML, loads back the same


def test_base_files_merge_and_relative_paths(tmp_path):
    (tmp_path / "base").mkdir()
    write_yaml(tmp_path / "base" / "a.yaml", {"train": {"epochs": 3, "batch_size": 4}, "loss": "bce"})
    write_yaml(tmp_path / "base" / "b.yaml", {"_base_": "a.yaml", "train": {"epochs": 7}})
    write_yaml(tmp_path / "exp.yaml", {"_base_": ["base/b.yaml"], "dataset": "shapes", "model": "resnet18",
                                       "train": {"seed": 9}})
    cfg = load_config(tmp_path / "exp.yaml")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.seed) == (7, 4, 9)
    assert cfg.output_dir.endswith("exp/version_0")  # no output_dir: a numbered folder per run


def test_a_section_naming_another_plugin_replaces_the_base_one():
    base = {"scheduler": {"name": "plateau", "patience": 1}}
    assert merge(base, {"scheduler": {"name": "cosine"}}) == {"scheduler": {"name": "cosine"}}
    assert merge(base, {"scheduler": {"patience": 4}}) == {"scheduler": {"name": "plateau", "patience": 4}}


def test_set_parses_yaml_values_and_mapping_replaces_section(tmp_path):
    assert parse_set("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_set("data.mean=[0.5, 0.5, 0.5]") == (["data", "mean"], [0.5, 0.5, 0.5])
    assert parse_set("output_dir=runs/x") == (["output_dir"], "runs/x")
    assert parse_set("model.pretrained=") == (["model", "pretrained"], None)
    path = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run", model={"name": "resnet18", "dropout": 0.5}))
    cfg = load_config(path, ["train.epochs=9", "model={name: resnet34}", "loss.pos_weight=null"])
    assert cfg.train.epochs == 9 and cfg.model.name == "resnet34" and cfg.model.cfg.dropout == 0.0
    data, sources, _ = compose(path, ["train.epochs=9"])
    assert sources["train.epochs"] == "--set" and sources["train.batch_size"] == str(path.resolve())


@pytest.mark.parametrize("item", ["train.epochs", "=5", "train..epochs=1", "a.b=[1,"])
def test_malformed_set_is_one_clear_error(item):
    with pytest.raises(ConfigError, match="--set"):
        parse_set(item)


def test_all_problems_reported_together_with_paths_and_files(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {
        "dataset": {"name": "shapes", "num_trian": 10},
        "model": {"name": "resnet18", "dropout": "high"},
        "optimizer": {"name": "adam", "lr": -1},
        "train": {"batch_size": 0, "epochs": 2.5},
        "metrics": ["map", {"name": "prf", "topk": 0}],
        "trian": {},
    })
    problems = problems_of(path)
    text = "\n".join(problems)
    assert all(str(path.resolve()) in p or str(path) in p for p in problems)
    assert "dataset.num_trian: unknown key 'num_trian' for dataset 'shapes' (did you mean 'num_train'?)" in text
    assert "model.dropout: expected a number, got 'high'" in text
    assert "optimizer.lr: must be > 0, got -1" in text  # -1.0 after coercion
    assert "train.batch_size: must be > 0, got 0" in text
    assert "train.epochs: expected an integer, got 2.5" in text
    assert "metrics[1].topk: must be >= 1" in text
    assert "unknown section 'trian' (did you mean 'train'?)" in text
    assert len(problems) == 7


def test_unknown_plugin_names_list_the_available_ones():
    problems = problems_of({"dataset": "shapes", "model": "resnet181", "loss": "bec"})
    assert any("model.name: unknown model 'resnet181'" in p and "resnet18" in p for p in problems)
    assert any("unknown loss 'bec' (did you mean 'bce'?)" in p for p in problems)
    problems = problems_of({"dataset": "shapes", "model": {"name": "classifier", "backbone": "resnet9"}})
    assert any(p.endswith("model.backbone: unknown backbone 'resnet9'" + p.split("resnet9'")[1]) for p in problems)


def test_missing_sections_and_required_keys():
    problems = problems_of({"model": "resnet18", "dataset": {"name": "voc2012"}})
    assert problems == ["<dict>: dataset.root: missing required key 'root' for dataset 'voc2012'"]
    problems = problems_of({"dataset": "shapes"})
    assert problems == ["<dict>: model: missing required section 'model'"]


def test_scheduler_and_optimizer_names_are_checked():
    problems = problems_of({"dataset": "shapes", "model": "resnet18", "optimizer": {"name": "adamm"},
                            "scheduler": {"name": "cosine", "patience": 2}})
    assert any("optimizer.name: unknown optimizer 'adamm'" in p and "did you mean 'adam'" in p for p in problems)
    assert any("scheduler.patience: unknown key 'patience'" in p for p in problems)


def test_yaml_problems_name_the_file_and_line(tmp_path):
    bad = tmp_path / "syntax.yaml"
    bad.write_text("dataset: shapes\nmodel: [resnet18\n")
    with pytest.raises(ConfigError, match=r"syntax.yaml:3:1: YAML syntax error"):
        load_config(bad)
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"dataset: shapes\nmodel: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n")
    with pytest.raises(ConfigError, match=r"evil.yaml:2: .*not allowed"):
        load_config(evil)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_base_cycle_and_missing_base(tmp_path):
    write_yaml(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write_yaml(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="_base_ cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_config(tmp_path / "a.yaml")
    write_yaml(tmp_path / "c.yaml", {"_base_": "gone.yaml"})
    with pytest.raises(ConfigError, match="_base_ file 'gone.yaml' does not exist"):
        load_config(tmp_path / "c.yaml")


def test_hook_sections_are_checked_and_can_be_switched_off():
    problems = problems_of({"dataset": "shapes", "model": "resnet18", "early_stop": {"patiense": 3}})
    assert any("early_stop.patiense: unknown key" in p and "did you mean 'patience'" in p for p in problems)
    cfg = load_config({"dataset": "shapes", "model": "resnet18", "tensorboard": False,
                       "early_stop": {"patience": 2}})
    assert {h.name for h in cfg.hooks} == {"early_stop", "progress"}
    assert cfg.resolved()["tensorboard"] is False
    assert next(h for h in cfg.hooks if h.name == "early_stop").cfg.patience == 2


def test_exponent_numbers_without_a_dot_are_numbers():
    cfg = load_config({"dataset": "shapes", "model": "resnet18", "optimizer": {"name": "adam", "lr": "5e-4"},
                       "loss": {"name": "bce", "pos_weight": ["1e0", 2]}}, ["optimizer.weight_decay=1e-5"])
    assert cfg.optimizer.cfg.lr == 5e-4 and cfg.optimizer.cfg.weight_decay == 1e-5
    assert cfg.loss.cfg.pos_weight == [1.0, 2.0]
    assert any("expected a number, got 'fast'" in p for p in problems_of(
        {"dataset": "shapes", "model": "resnet18", "optimizer": {"name": "adam", "lr": "fast"}}))
