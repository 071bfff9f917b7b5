"""mlcore.weights: one reader of weight files, layouts that rename other code's keys,
strict loading whose errors name every culprit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mlcore
from mlcore import MlcoreError, WeightLayout

#: a file from "other code": the body called ``net``, the head ``net.fc``, plus an extra
OTHER = WeightLayout("other code", detect="net.", rename=(("net.fc.", "head."), ("net.", "body.")),
                     drop=("net.aux.",))


class Tiny(nn.Module):
    weight_layouts = (OTHER,)

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)
        self.told = []

    def weights_loaded(self, layout):
        self.told.append(layout)


def own_state(seed=0) -> dict:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in Tiny().state_dict().items()}


def same(model: nn.Module, state: dict) -> bool:
    return state.keys() == model.state_dict().keys() and all(torch.equal(model.state_dict()[k], v)
                                                             for k, v in state.items())


def test_layout_renames_by_first_matching_prefix_and_drops():
    state = {"net.fc.weight": 1, "net.weight": 2, "net.aux.w": 3, "other.x": 4}
    assert OTHER.matches(state) and not OTHER.matches({"body.weight": 1})
    assert OTHER.apply(state) == {"head.weight": 1, "body.weight": 2, "other.x": 4}
    clash = WeightLayout("clash", detect="a.", rename=(("a.", "b."),))
    with pytest.raises(MlcoreError, match=r"layout 'clash' reads both 'a.x' and 'b.x' as 'b.x'"):
        clash.apply({"a.x": 1, "b.x": 2})


def test_a_file_in_a_declared_layout_and_one_in_the_own_layout_load(tmp_path):
    want = own_state(1)
    foreign = {"net." + k[len("body."):] if k.startswith("body.") else "net.fc." + k[len("head."):]: v
               for k, v in want.items()}
    foreign["net.aux.scale"] = torch.ones(3)  # a part the model has no place for: dropped
    torch.save({"epoch": 3, "state_dict": foreign, "best_mAP": np.float64(0.5)}, tmp_path / "other.pth.tar")
    model = Tiny()
    assert mlcore.load_weights(model, tmp_path / "other.pth.tar") is OTHER
    assert model.told == [OTHER] and same(model, want)

    torch.save(want, tmp_path / "own.pth")
    fresh = Tiny()
    assert mlcore.load_weights(fresh, str(tmp_path / "own.pth")) is None
    assert fresh.told == [None] and same(fresh, want)

    from_dict = Tiny()  # a loaded state dict works as well as a path
    assert mlcore.load_weights(from_dict, foreign) is OTHER and same(from_dict, want)
    with pytest.raises(MlcoreError, match="not in the model: net."):  # layouts given: none
        mlcore.load_weights(Tiny(), foreign, layouts=())


def test_mismatch_names_the_parameter_and_both_shapes(tmp_path):
    state = own_state()
    state["head.weight"] = torch.zeros(5, 4)
    state["head.extra"] = torch.zeros(1)
    del state["body.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(MlcoreError) as err:
        mlcore.load_weights(Tiny(), tmp_path / "bad.pth")
    msg = str(err.value)
    assert "bad.pth' does not fit the model (another model or another number of labels?)" in msg
    assert "head.weight: checkpoint has shape (5, 4), the model (2, 4)" in msg
    assert "missing from the checkpoint: body.bias" in msg and "not in the model: head.extra" in msg
    foreign = {"net." + k[len("body."):]: v for k, v in own_state().items() if k.startswith("body.")}
    with pytest.raises(MlcoreError, match=r"(?s)missing from the checkpoint: head.weight.*"
                                          r"read as the other code layout"):
        mlcore.load_weights(Tiny(), foreign)
    # ignore: the replaced head is left out on both sides
    model = Tiny()
    body = {k: v for k, v in own_state(2).items() if k.startswith("body.")}
    mlcore.load_state(model, body, "x", ignore=("head.",))
    assert torch.equal(model.body.weight, own_state(2)["body.weight"])


def test_safetensors_and_module_prefixed_files(tmp_path):
    from safetensors.torch import save_file

    want = own_state(3)
    save_file({"module." + k: v.contiguous() for k, v in want.items()}, str(tmp_path / "w.safetensors"))
    read = mlcore.read_weights(tmp_path / "w.safetensors")
    assert read.keys() == want.keys() and all(torch.equal(read[k], want[k]) for k in want)
    model = Tiny()
    mlcore.load_weights(model, tmp_path / "w.safetensors")
    assert same(model, want)

    # DataParallel's module. prefix inside a model_state_dict wrapper, and an mlcore checkpoint
    dp = {"module." + k: v for k, v in want.items()}
    torch.save({"model_state_dict": dp, "step": 7}, tmp_path / "dp.pt")
    torch.save({"format": "mlcore-checkpoint", "model": want, "epoch": 2}, tmp_path / "ours.pt")
    for name in ("dp.pt", "ours.pt"):
        model = Tiny()
        mlcore.load_weights(model, tmp_path / name)
        assert same(model, want), name


def test_unreadable_empty_and_missing_files_say_what_is_wrong(tmp_path):
    torch.save({"epoch": 3, "best_mAP": 0.5}, tmp_path / "empty.pth")
    with pytest.raises(MlcoreError, match="empty.pth' holds no model weights"):
        mlcore.read_weights(tmp_path / "empty.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(MlcoreError, match="junk.safetensors' is not a readable safetensors file"):
        mlcore.read_weights(tmp_path / "junk.safetensors")
    with pytest.raises(MlcoreError, match=r"pretrained weights file '.*gone.pth' does not exist; "
                                          r"download .* local path"):
        mlcore.load_weights(Tiny(), tmp_path / "gone.pth", what="pretrained weights")


def test_a_checkpoint_file_gives_back_what_it_held(tmp_path):
    from mlcore.weights import CHECKPOINT_FORMAT, load_weights_file, safe_load

    want = own_state(4)
    torch.save({"format": CHECKPOINT_FORMAT, "model": want, "epoch": 5}, tmp_path / "ckpt.pt")
    model = Tiny()
    held = load_weights_file(model, str(tmp_path / "ckpt.pt"))
    assert held["epoch"] == 5 and same(model, want) and model.told == [None]
    assert safe_load(tmp_path / "ckpt.pt")["epoch"] == 5
