"""``mlcore export`` and ``predict`` on an exported model: every built-in model exports to
ONNX and TorchScript and agrees with PyTorch at several batch sizes; the metadata holds the
classes, sizes, normalization, checkpoint and calibrated thresholds; ``predict
model.onnx`` prints what ``predict CONFIG`` prints; ``--threshold calibrated``; and the
errors a user can cause end in one message and exit status 2.

The CLI runs in this process (``mlcore.cli.main.main``) so that a tiny backbone registered
here serves every model and the tests stay fast on two cores."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mlcore
from conftest import tiny_config, write_yaml
from mlcore.cli.main import main
from mlcore.errors import MlcoreError
from tiny_backbone import TinyBackbone

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

import mlcore.export as mexport  # noqa: E402
from mlcore.export import OnnxModel, deployed, export, read_torchscript_metadata  # noqa: E402

SHAPES_CLASSES = 10
TINY_DATA = {"name": "shapes", "num_train": 16, "num_val": 8, "image_size": 32, "seed": 3}


@pytest.fixture(scope="module", autouse=True)
def tiny_backbone():
    """``backbone: tiny`` (16 channels at 1/4 of the side) for every model, in this process."""
    mlcore.register("backbone", "tiny", TinyBackbone, replace=True)


def words(tmp_path, dim=16):
    path = tmp_path / "words.npy"
    np.save(path, np.random.default_rng(1).normal(size=(SHAPES_CLASSES, dim)).astype(np.float32))
    return str(path)


MODELS = {
    "classifier": lambda tmp: {"backbone": "tiny"},
    "ssgrl": lambda tmp: {"backbone": "tiny", "embeddings": words(tmp), "hidden_dim": 16, "output_dim": 16,
                          "freeze": "none"},
    "csra": lambda tmp: {"backbone": "tiny", "heads": 4, "lam": 0.5},
    "mlgcn": lambda tmp: {"backbone": "tiny", "embeddings": words(tmp), "hidden_dim": 16},
    "q2l": lambda tmp: {"backbone": "tiny", "heads": 2, "ff_dim": 32, "dropout": 0.0},
    "ml_decoder": lambda tmp: {"backbone": "tiny", "num_groups": 4, "decoder_dim": 16, "heads": 2,
                               "ff_dim": 32},
}


def config(tmp_path, model: dict, **data) -> dict:
    cfg = tiny_config(tmp_path / "run", model=model, dataset=dict(TINY_DATA))
    cfg["data"] = {"scale_size": 36, "crop_size": 32, **data}  # a real resize + centre crop
    cfg["train"].update(epochs=1)
    return cfg


def perturbed_checkpoint(exp, path):
    """Weights no initialization gives (so a graph that ignored one would be caught),
    saved as a plain state dict."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in exp.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    torch.save(exp.model.state_dict(), path)
    return path


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", list(MODELS))
def test_every_builtin_model_exports_and_matches_pytorch_at_any_batch(tmp_path, name):
    data = {"mean": [0, 0, 0], "std": [1, 1, 1]} if name == "ml_decoder" else {}  # a recipe without mean/std
    exp = mlcore.build(config(tmp_path, {"name": name, **MODELS[name](tmp_path)}, **data))
    ckpt = perturbed_checkpoint(exp, tmp_path / "weights.pt")
    result = export(exp, "onnx", checkpoint=ckpt, out=tmp_path / "m.onnx", log=lambda *_: None)
    assert set(result.differences) == {2, 1} and max(result.differences.values()) <= 1e-4

    # the file on its own: batch 3 (neither checked size) against the eager wrapper
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, outp.name) == ("images", "tensor(uint8)", "probabilities")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 32, 32]  # a symbolic batch dimension
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(9))
    got = session.run(None, {"images": x.numpy()})[0]
    wrapped = deployed(exp.model.cpu().eval(), exp.config.data.mean, exp.config.data.std)
    with torch.no_grad():
        want = wrapped(x).numpy()
        plain = torch.sigmoid(exp.model(exp.normalizer(x))).numpy()  # what predict computes
    assert got.shape == (3, SHAPES_CLASSES)
    assert np.abs(got - want).max() <= 1e-4 and np.abs(want - plain).max() <= 1e-6
    assert np.ptp(got) > 1e-3  # not a constant: the test would pass for any graph otherwise

    # TorchScript: traced, reloaded, checked at batch 2 and 1; here at batch 3
    ts = export(exp, "torchscript", checkpoint=ckpt, out=tmp_path / "m.pt", log=lambda *_: None)
    assert max(ts.differences.values()) <= 1e-4
    with torch.no_grad():
        assert np.abs(torch.jit.load(str(ts.path))(x).numpy() - want).max() <= 1e-4


def trained(tmp_path):
    """A tiny classifier trained one epoch: a real mlcore checkpoint (with its checksum)."""
    cfg_path = write_yaml(tmp_path / "cfg.yaml", config(tmp_path, {"name": "classifier", "backbone": "tiny"}))
    exp = mlcore.build(cfg_path)
    exp.fit()
    return cfg_path, exp


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_export_metadata_predict_and_calibrated_thresholds(tmp_path, capsys):
    from mlcore.weights import _checksum_of

    cfg_path, exp = trained(tmp_path)
    ckpt = exp.checkpoint_path()
    # not the calibration split: its scores are the thresholds, where 1e-7 would flip a label
    images = exp.train_set.images[:5]

    # no thresholds yet: --threshold calibrated says what to do
    rc, _, err = cli(capsys, "predict", cfg_path, images[0], "--threshold", "calibrated")
    assert rc == 2 and "mlcore calibrate" in err
    assert cli(capsys, "export", cfg_path, "--format", "onnx")[0] == 0
    plain_onnx = tmp_path / "run" / "export" / "model.onnx"  # the default place
    rc, _, err = cli(capsys, "predict", plain_onnx, images[0], "--threshold", "calibrated")
    assert rc == 2 and "no calibrated thresholds" in err and "mlcore calibrate" in err

    assert cli(capsys, "calibrate", cfg_path)[0] == 0
    thresholds = json.loads((ckpt.parent / "thresholds.json").read_text())
    out_file = tmp_path / "deploy" / "shapes.onnx"
    rc, out, err = cli(capsys, "export", cfg_path, "--format", "onnx", "--out", out_file)
    assert rc == 0, err
    assert "max |onnxruntime - PyTorch|" in out and "calibrated thresholds included" in out

    meta = {p.key: p.value for p in onnx.load(str(out_file)).metadata_props}
    assert json.loads(meta["classes"]) == exp.classes
    assert (meta["input_size"], meta["resize_size"]) == ("32", "36")
    assert json.loads(meta["mean"]) == pytest.approx(exp.config.data.mean)
    assert json.loads(meta["std"]) == pytest.approx(exp.config.data.std)
    assert meta["mlcore_version"] == mlcore.__version__ and meta["model"] == "classifier"
    assert meta["checkpoint"] == str(ckpt) and meta["checkpoint_sha256"] == _checksum_of(str(ckpt))[1]
    assert json.loads(meta["thresholds"]) == pytest.approx(thresholds["thresholds"])
    assert meta["threshold_objective"] == thresholds["objective"] == "f1"

    # predict via ONNX == predict via config + checkpoint: labels, order, probabilities
    for extra in ([], ["--threshold", "0.4"], ["--threshold", "calibrated"]):
        _, by_config, _ = cli(capsys, "predict", cfg_path, *images, "--json", "--topk", "4", *extra)
        rc, by_onnx, err = cli(capsys, "predict", out_file, *images, "--json", "--topk", "4", *extra)
        assert rc == 0, err
        a, b = rows(by_config), rows(by_onnx)
        assert len(a) == len(b) == 5
        for ra, rb in zip(a, b):
            for key in ("topk", "above_threshold") if extra else ("topk",):
                assert [e["label"] for e in ra[key]] == [e["label"] for e in rb[key]]
                assert np.allclose([e["probability"] for e in ra[key]], [e["probability"] for e in rb[key]],
                                   atol=1e-4)
    # calibrated: exactly the labels at or above their class's threshold
    probs = OnnxModel(out_file)
    batch = torch.stack([probs.eval_transform(mlcore.data.images.read_image(p)) for p in images])
    p = probs.predict(batch).numpy()
    thr = np.asarray(thresholds["thresholds"])
    for i, row in enumerate(rows(by_onnx)):
        want = {c for j, c in enumerate(exp.classes) if p[i, j] >= thr[j]}
        assert {e["label"] for e in row["above_threshold"]} == want
    # the text format says which rule it used
    _, text, _ = cli(capsys, "predict", out_file, images[0], "--threshold", "calibrated")
    assert "\t>=calibrated: " in text

    # TorchScript: the same metadata, the same numbers after a reload
    ts_file = tmp_path / "deploy" / "shapes.pt"
    rc, out, err = cli(capsys, "export", cfg_path, "--format", "torchscript", "--out", ts_file)
    assert rc == 0, err
    assert read_torchscript_metadata(ts_file) == meta
    loaded = torch.jit.load(str(ts_file))
    with torch.no_grad():
        assert torch.allclose(loaded(batch), torch.from_numpy(p), atol=1e-4)
        assert loaded(batch[:3]).shape == (3, SHAPES_CLASSES)


def test_a_failed_check_writes_nothing_and_bad_places_are_refused(tmp_path, monkeypatch):
    exp = mlcore.build(config(tmp_path, {"name": "classifier", "backbone": "tiny"}))
    ckpt = perturbed_checkpoint(exp, tmp_path / "w.pt")
    out = tmp_path / "out" / "m.onnx"
    monkeypatch.setattr(mexport, "TOLERANCE", -1.0)  # no difference is small enough
    with pytest.raises(MlcoreError, match=r"check failed: onnxruntime and PyTorch differ .* nothing was"):
        export(exp, "onnx", checkpoint=ckpt, out=out)
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))  # no temp file
    monkeypatch.undo()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(MlcoreError, match="is not a writable folder"):
        export(exp, "torchscript", checkpoint=ckpt, out=tmp_path / "a_file" / "m.pt")
    with pytest.raises(MlcoreError, match="it is a folder"):
        export(exp, "torchscript", checkpoint=ckpt, out=tmp_path)


def test_user_errors_exit_2_with_one_message(tmp_path, capsys, monkeypatch):
    cfg_path = write_yaml(tmp_path / "cfg.yaml", config(tmp_path, {"name": "classifier", "backbone": "tiny"}))
    with pytest.raises(SystemExit) as exc:  # argparse's choices
        main(["export", str(cfg_path), "--format", "tflite"])
    assert exc.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err

    rc, _, err = cli(capsys, "export", cfg_path, "--format", "onnx")  # never trained
    assert rc == 2 and "best.pt" in err and "does not exist" in err and "Traceback" not in err

    image = str(mlcore.build(cfg_path).val_set.images[0])
    foreign = tmp_path / "identity.onnx"  # a valid ONNX model, not one of ours
    h = onnx.helper
    graph = h.make_graph([h.make_node("Identity", ["x"], ["y"])], "g",
                         [h.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 3, 32, 32])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.UINT8, [1, 3, 32, 32])])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), str(foreign))
    rc, _, err = cli(capsys, "predict", foreign, image)
    assert rc == 2 and "not one exported by mlcore" in err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    rc, _, err = cli(capsys, "predict", garbage, image)
    assert rc == 2 and "is not a readable ONNX model" in err
    rc, _, err = cli(capsys, "predict", tmp_path / "missing.onnx", image)
    assert rc == 2 and "does not exist" in err
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(foreign), image, "--threshold", "high"])
    assert exc.value.code == 2 and "must be a number or 'calibrated'" in capsys.readouterr().err

    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # the extra not installed
    rc, _, err = cli(capsys, "export", cfg_path, "--format", "onnx")
    assert rc == 2 and "pip install 'mlcore[export]'" in err and "onnxruntime" in err


def test_calibrated_predictions_agree_on_the_calibration_split(tmp_path, capsys, monkeypatch):
    """The thresholds are exact scores of the calibration split's images, where onnxruntime
    and PyTorch differ by ~1e-7: both runtimes count a score within 1e-6 below its class's
    threshold as reaching it, so they name the same labels on exactly those images."""
    from mlcore.cli.calibrate import default_split

    cfg_path, exp = trained(tmp_path)
    assert cli(capsys, "calibrate", cfg_path)[0] == 0
    out_file = tmp_path / "m.onnx"
    assert cli(capsys, "export", cfg_path, "--format", "onnx", "--out", out_file)[0] == 0
    images = list(exp.split_set(default_split(exp.config.data)).images)
    _, by_config, _ = cli(capsys, "predict", cfg_path, *images, "--json", "--threshold", "calibrated")
    rc, by_onnx, err = cli(capsys, "predict", out_file, *images, "--json", "--threshold", "calibrated")
    assert rc == 0, err
    a, b = rows(by_config), rows(by_onnx)
    assert len(a) == len(b) == len(images)
    assert [{e["label"] for e in r["above_threshold"]} for r in a] == \
           [{e["label"] for e in r["above_threshold"]} for r in b]
    # the runtimes' ~1e-7 difference, made certain: onnxruntime's scores a hair lower
    real = OnnxModel.predict
    monkeypatch.setattr(OnnxModel, "predict", lambda self, *x, **k: real(self, *x, **k) - 5e-7)
    rc, lower, err = cli(capsys, "predict", out_file, *images, "--json", "--threshold", "calibrated")
    assert rc == 0, err
    assert [{e["label"] for e in r["above_threshold"]} for r in a] == \
           [{e["label"] for e in r["above_threshold"]} for r in rows(lower)]


def test_export_and_predict_take_the_ema_weights_and_say_so(tmp_path, capsys):
    cfg = config(tmp_path, {"name": "classifier", "backbone": "tiny"})
    cfg["train"].update(ema=0.5)
    cfg_path = write_yaml(tmp_path / "cfg.yaml", cfg)
    exp = mlcore.build(cfg_path)
    exp.fit()
    out_file = tmp_path / "ema.onnx"
    rc, out, err = cli(capsys, "export", cfg_path, "--format", "onnx", "--out", out_file)
    assert rc == 0, err
    assert "EMA" in out + err
    meta = {p.key: p.value for p in onnx.load(str(out_file)).metadata_props}
    assert meta["weights"] == "ema"
    images = exp.val_set.images[:4]
    _, by_config, err_config = cli(capsys, "predict", cfg_path, *images, "--json", "--topk", "10")
    assert "EMA" in err_config
    _, by_onnx, _ = cli(capsys, "predict", out_file, *images, "--json", "--topk", "10")
    for ra, rb in zip(rows(by_config), rows(by_onnx)):
        pa = {e["label"]: e["probability"] for e in ra["topk"]}
        pb = {e["label"]: e["probability"] for e in rb["topk"]}
        assert pa.keys() == pb.keys() and all(abs(pa[k] - pb[k]) <= 1e-4 for k in pa)
    # the raw weights on request: other numbers, and the metadata says which
    raw_file = tmp_path / "raw.onnx"
    assert cli(capsys, "export", cfg_path, "--format", "onnx", "--out", raw_file, "--weights", "raw")[0] == 0
    assert {p.key: p.value for p in onnx.load(str(raw_file)).metadata_props}["weights"] == "raw"
