"""A checkpoint is the truth about its outputs: its class names (compared by name, a
permutation reordered, other names an error), its input size and model settings (used by
evaluate/predict unless --set names them), and it is enough to predict without a dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_main, tiny_config, write_yaml


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run trained at 40 px (the config used later says 32)."""
    from mlcore.cli.main import main

    tmp = tmp_path_factory.mktemp("truth")
    cfg = tiny_config(tmp / "run")
    cfg["data"] = {"scale_size": 40, "crop_size": 40, "train_crops": [40]}
    cfg["dataset"] = {**cfg["dataset"], "num_train": 16, "image_size": 40}
    cfg["train"] = {**cfg["train"], "epochs": 1, "batch_size": 16, "ema": 0.9}
    path = write_yaml(tmp / "trained.yaml", cfg)
    assert main(["train", str(path)]) == 0
    # the config a user evaluates with: the same data and run, another input size
    later = {**cfg, "data": {"scale_size": 32, "crop_size": 32, "train_crops": [32]}}
    return tmp, path, write_yaml(tmp / "later.yaml", later)


_main = run_main  # mlcore in this process: (exit code, stdout, stderr)


def _reversed_checkpoint(src, dst):
    """The same model with its classes (and the per-class rows of fc) in reverse order."""
    held = torch.load(src, weights_only=True)
    held["classes"] = list(reversed(held["classes"]))
    for state in (held["model"], held.get("ema") or {}):
        for key in ("fc.weight", "fc.bias"):
            if key in state:
                state[key] = state[key].flip(0)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(held, dst)
    return dst


def test_the_same_model_in_another_label_order_scores_the_same(run, capsys, tmp_path):
    tmp, trained, _ = run
    best = tmp / "run" / "checkpoints" / "best.pt"
    other = _reversed_checkpoint(best, tmp_path / "rev" / "best.pt")
    code, _, err = _main(capsys, "evaluate", trained, "--checkpoint", best, "--out", tmp_path / "a")
    assert code == 0, err
    code, _, err = _main(capsys, "evaluate", trained, "--checkpoint", other, "--out", tmp_path / "b")
    assert code == 0, err
    a, b = np.load(tmp_path / "a" / "scores.npy"), np.load(tmp_path / "b" / "scores.npy")
    np.testing.assert_allclose(a, b, atol=1e-6)  # the reordered weights give the dataset's order
    ra, rb = (json.loads((tmp_path / x / "result.json").read_text()) for x in "ab")
    assert ra["mAP"] == pytest.approx(rb["mAP"], abs=1e-9)
    assert ra["ema_mAP"] == pytest.approx(rb["ema_mAP"], abs=1e-9)  # the EMA weights reordered too
    # predict names the labels by the checkpoint, whatever order its file keeps them in
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(image)
    outs = []
    for ckpt in (best, other):
        code, out, err = _main(capsys, "predict", trained, image, "--checkpoint", ckpt, "--json", "--topk", "3")
        assert code == 0, err
        outs.append(json.loads(out.splitlines()[0])["topk"])
    assert [d["label"] for d in outs[0]] == [d["label"] for d in outs[1]]
    for x, y in zip(*outs):
        assert x["probability"] == pytest.approx(y["probability"], abs=1e-5)


def test_a_checkpoint_trained_on_other_labels_is_an_error(run, capsys, tmp_path):
    import mlcore
    from mlcore.errors import MlcoreError

    tmp, trained, _ = run
    held = torch.load(tmp / "run" / "checkpoints" / "best.pt", weights_only=True)
    first = held["classes"][0]
    held["classes"] = ["dark " + first] + held["classes"][1:]
    torch.save(held, tmp_path / "best.pt")
    code, _, err = _main(capsys, "evaluate", trained, "--checkpoint", tmp_path / "best.pt", "--out", tmp_path / "e")
    assert code == 2 and "Traceback" not in err
    assert "trained on other labels" in err and f"dark {first}" in err  # the difference is listed
    assert not (tmp_path / "e" / "result.json").exists()
    # as model.weights too: the names are compared, not the positions
    cfg = tiny_config(tmp_path / "ft")
    cfg["dataset"] = {**cfg["dataset"], "num_train": 16, "image_size": 40}
    cfg["model"] = {"name": "resnet18", "weights": str(tmp_path / "best.pt")}
    with pytest.raises(MlcoreError, match=f"other labels.*dark {first}"):
        mlcore.build(cfg).model


def test_model_weights_from_a_run_in_another_label_order_load_by_name(run, tmp_path):
    import mlcore

    tmp, _, _ = run
    best = tmp / "run" / "checkpoints" / "best.pt"
    other = _reversed_checkpoint(best, tmp_path / "rev.pt")
    cfg = tiny_config(tmp_path / "ft")
    cfg["dataset"] = {**cfg["dataset"], "num_train": 16, "image_size": 40}
    a = mlcore.build({**cfg, "model": {"name": "resnet18", "weights": str(best)}}).model
    b = mlcore.build({**cfg, "model": {"name": "resnet18", "weights": str(other)}}).model
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_evaluate_scores_at_the_size_the_model_was_trained_at(run, capsys, tmp_path):
    tmp, trained, later = run
    best = tmp / "run" / "checkpoints" / "best.pt"
    code, _, err = _main(capsys, "evaluate", trained, "--checkpoint", best, "--out", tmp_path / "t")
    assert code == 0 and "checkpoint's settings" not in err
    code, _, err = _main(capsys, "evaluate", later, "--checkpoint", best, "--out", tmp_path / "l")
    assert code == 0, err
    assert "data.crop_size 40" in err and "the config says 32" in err  # said, on stderr
    np.testing.assert_allclose(np.load(tmp_path / "t" / "scores.npy"), np.load(tmp_path / "l" / "scores.npy"),
                               atol=1e-6)
    # --set names it: the command line wins
    code, _, err = _main(capsys, "evaluate", later, "--checkpoint", best, "--out", tmp_path / "s",
                         "--set", "data.crop_size=32", "data.scale_size=32")
    assert code == 0 and "data.crop_size" not in err
    assert not np.allclose(np.load(tmp_path / "t" / "scores.npy"), np.load(tmp_path / "s" / "scores.npy"),
                           atol=1e-6)


def test_predict_needs_no_dataset(run, capsys, tmp_path):
    from PIL import Image

    tmp, trained, _ = run
    best = tmp / "run" / "checkpoints" / "best.pt"
    image = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(image)
    code, want, err = _main(capsys, "predict", trained, image, "--checkpoint", best, "--json")
    assert code == 0, err
    # a config whose dataset cannot be read at all: the checkpoint names the classes
    cfg = tiny_config(tmp_path / "nowhere")
    cfg["dataset"] = {"name": "listfile", "root": str(tmp_path / "no-such-folder")}
    shipped = write_yaml(tmp_path / "shipped.yaml", cfg)
    code, got, err = _main(capsys, "predict", shipped, image, "--checkpoint", best, "--json")
    assert code == 0, err
    a, b = json.loads(want.splitlines()[0]), json.loads(got.splitlines()[0])
    assert [d["label"] for d in a["topk"]] == [d["label"] for d in b["topk"]]
    for x, y in zip(a["topk"], b["topk"]):
        assert x["probability"] == pytest.approx(y["probability"], abs=1e-5)


def test_the_python_api_says_when_the_config_differs_and_from_checkpoint_scores_as_trained(run, capsys):
    import mlcore

    tmp, trained, later = run
    want = mlcore.build(trained).evaluate()["mAP"]  # the config it was trained with: nothing to say
    with pytest.warns(UserWarning, match=r"data\.crop_size 40 \(this config: 32\)[\s\S]*from_checkpoint"):
        mlcore.build(later).evaluate()  # scored at 32 px, as the config is written
    exp = mlcore.from_checkpoint(later)
    assert exp.config.data.crop_size == 40 and exp.weights_source.endswith("best.pt")
    assert exp.evaluate()["mAP"] == pytest.approx(want, abs=1e-9)
