"""The catalogue of bad inputs: each ends in one clear message naming the culprit, exit
status 2, no traceback, and nothing half-written (no run folder)."""
from __future__ import annotations

import os

import pytest
import torch

from conftest import make_dist, tiny_config, write_yaml
from mlcore.cli.main import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_clean_error(capsys, argv, *needles, run_dir=None):
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, err)
    assert "Traceback" not in err and err.startswith("mlcore: error:"), err
    for n in needles:
        assert n in err, (n, err)
    if run_dir is not None:
        assert not os.path.exists(run_dir), f"{run_dir} was created"
    return err


@pytest.fixture
def cfg(tmp_path):
    return tmp_path / "run", write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))


def test_config_mistakes(tmp_path, capsys, cfg):
    run_dir, path = cfg
    assert_clean_error(capsys, ["train", tmp_path / "missing.yaml"], "missing.yaml", "does not exist")
    bad = tmp_path / "syntax.yaml"
    bad.write_text("dataset: shapes\nmodel: {name: resnet18\n")
    assert_clean_error(capsys, ["train", bad], "syntax.yaml:3", "YAML syntax error")
    assert_clean_error(capsys, ["train", path, "--set", "trian.epochs=1"], "unknown section 'trian'",
                       "did you mean 'train'", run_dir=run_dir)
    assert_clean_error(capsys, ["train", path, "--set", "model.dropuot=0.1"], "model.dropuot", "did you mean 'dropout'",
                       run_dir=run_dir)
    assert_clean_error(capsys, ["train", path, "--set", "model.name=resnet7"], "unknown model 'resnet7'", run_dir=run_dir)
    assert_clean_error(capsys, ["train", path, "--set", "optimizer.lr=-0.1"], "optimizer.lr: must be > 0", run_dir=run_dir)
    assert_clean_error(capsys, ["train", path, "--set", "train.batch_size=0"], "train.batch_size: must be > 0",
                       run_dir=run_dir)
    assert_clean_error(capsys, ["train", path, "--set", "train.epochs=many"], "train.epochs: expected an integer",
                       run_dir=run_dir)
    assert_clean_error(capsys, ["train", path, "--set", "no-equals-sign"], "expected key.path=value", run_dir=run_dir)
    write_yaml(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write_yaml(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    assert_clean_error(capsys, ["train", tmp_path / "a.yaml"], "_base_ cycle")


def test_dataset_mistakes(tmp_path, capsys, cfg):
    run_dir, path = cfg
    assert_clean_error(capsys, ["train", path, "--set", f"dataset={{name: voc2012, root: {tmp_path / 'nope'}}}"],
                       "dataset root", "does not exist", run_dir=run_dir)
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_train2014.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"}')
    assert_clean_error(capsys, ["train", path, "--set", f"dataset={{name: coco, root: {coco}}}"],
                       "instances_train2014.json", "not valid JSON", run_dir=run_dir)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "label.txt").write_text("cat\n")
    (lists / "train.txt").write_text("")
    (lists / "val.txt").write_text("")
    assert_clean_error(capsys, ["train", path, "--set", f"dataset={{name: listfile, root: {lists}}}"],
                       "split 'train' is empty", run_dir=run_dir)


def test_checkpoint_and_weight_mistakes(tmp_path, capsys, cfg):
    run_dir, path = cfg
    assert_clean_error(capsys, ["evaluate", path], "best.pt", "does not exist")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    assert_clean_error(capsys, ["evaluate", path, "--checkpoint", junk], "junk.pt", "not a readable PyTorch checkpoint")
    other = tmp_path / "r34.pt"
    import mlcore

    torch.save(mlcore.build({**tiny_config(tmp_path / "x"), "model": "resnet34"}).model.state_dict(), other)
    err = assert_clean_error(capsys, ["evaluate", path, "--checkpoint", other], "r34.pt", "does not fit the model")
    assert "not in the model: backbone.layer1.2" in err  # ResNet-34 has a third block there
    state = mlcore.build(tiny_config(tmp_path / "x")).model.state_dict()
    state["fc.weight"], state["fc.bias"] = torch.zeros(20, 512), torch.zeros(20)  # a 20-label model
    torch.save(state, tmp_path / "voc.pt")
    assert_clean_error(capsys, ["evaluate", path, "--checkpoint", tmp_path / "voc.pt"],
                       "fc.weight: checkpoint has shape (20, 512), the model (10, 512)")
    assert_clean_error(capsys, ["train", path, "--set", f"model.pretrained={tmp_path / 'gone.pth'}"],
                       "pretrained weights file", "gone.pth", run_dir=run_dir)
    emb = tmp_path / "words.txt"
    emb.write_text("red 1 2\nblue 3 4\ncircle 5 6\n")
    assert_clean_error(capsys, ["train", path, "--set", f"model={{name: ssgrl, backbone: resnet18, embeddings: {emb}}}"],
                       "lacks words", "square", run_dir=run_dir)


def test_predict_and_output_mistakes(tmp_path, capsys, cfg):
    import torch

    import mlcore

    run_dir, path = cfg
    text = tmp_path / "photo.jpg"
    text.write_text("this is text")
    # no checkpoint yet: that is said first (the checkpoint sets the input size the images get)
    assert_clean_error(capsys, ["predict", path, text], "best.pt' does not exist", "train first")
    weights = tmp_path / "weights.pt"
    torch.save(mlcore.build(path).model.state_dict(), weights)
    assert_clean_error(capsys, ["predict", path, text, "--checkpoint", weights], "photo.jpg")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_clean_error(capsys, ["train", path, "--set", f"output_dir={afile}"], "is a file, not a folder")


def test_plugin_failures_name_the_distribution(tmp_path, capsys, cfg, monkeypatch):
    _, path = cfg
    site = make_dist(tmp_path / "site", "mlcore-flaky", {"mlcore.models": {"flaky": "flaky_mod:Flaky",
                                                                           "crashy": "crashy_mod:x"}}, {
        "flaky_mod": """
            class Flaky:
                def __init__(self, num_classes: int):
                    raise RuntimeError("cannot build: out of unicorns")
        """,
        "crashy_mod": "raise ImportError('needs libcrash')\n"})
    monkeypatch.syspath_prepend(str(site))
    from mlcore import registry

    monkeypatch.setattr(registry, "_default", None)  # a fresh registry that sees the fake distribution
    assert_clean_error(capsys, ["train", path, "--set", "model.name=crashy"], "mlcore-flaky", "needs libcrash")
    assert_clean_error(capsys, ["train", path, "--set", "model.name=flaky"], "model 'flaky' failed to build",
                       "out of unicorns")


def test_an_output_folder_that_cannot_be_written(tmp_path, capsys, cfg, monkeypatch):
    import pathlib

    _, path = cfg
    real = pathlib.Path.mkdir

    def read_only(self, *a, **k):
        if "run" in self.parts:
            raise OSError(30, "Read-only file system")  # EROFS: root ignores permissions, so inject it
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    assert_clean_error(capsys, ["train", path], "cannot write to output_dir", "Read-only file system")


def test_safetensors_weights_load_and_pickles_never_run(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    import mlcore

    net = torchvision.models.resnet18(weights=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    model = mlcore.create("model", "resnet18", pretrained=str(tmp_path / "r18.safetensors"), num_classes=3)
    assert torch.equal(model.backbone.layer2[0].conv1.weight, net.layer2[0].conv1.weight)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(mlcore.MlcoreError, match="not a readable safetensors file"):
        mlcore.create("model", "resnet18", pretrained=str(tmp_path / "bad.safetensors"), num_classes=3)
