"""Checkpoint integrity: a checkpoint mlcore writes ends with a checksum that every load
verifies. Flipped bytes (anywhere: tensor data, pickle, zip directory, the checksum itself),
a cut file and random bytes are errors naming the file; files from elsewhere, and mlcore
checkpoints written before checksums, load as before."""
from __future__ import annotations

import os
import shutil
import struct
import zipfile

import pytest
import torch

import mlcore
from conftest import run_cli, tiny_config, write_yaml
from mlcore.engine.checkpoint import VERSION, atomic_save
from mlcore.errors import MlcoreError
from mlcore.weights import (CHECKPOINT_FORMAT, CHECKSUM_CHUNK, CHECKSUM_TAG, TRAILER_LENGTH,
                            CheckpointDamaged, load_weights, load_weights_file, read_weights, safe_load,
                            verify_checkpoint)


class Net(torch.nn.Module):
    """Big enough (about 12 MB) for the checksum to span several chunks and threads."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(1000, 2000)
        self.b = torch.nn.Linear(1000, 1000)


def net(seed=0) -> Net:
    torch.manual_seed(seed)
    return Net()


def write(tmp_path, name="ckpt.pt", seed=0):
    model = net(seed)
    path = tmp_path / name
    atomic_save({"format": CHECKPOINT_FORMAT, "version": VERSION, "model": model.state_dict(), "epoch": 3},
                path)
    return path, model.state_dict()


def same(state, want) -> bool:
    return state.keys() == want.keys() and all(torch.equal(state[k], want[k]) for k in want)


def data_span(path):
    """(start, size) of the largest tensor record's bytes inside the zip archive."""
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if "/data/" in i.filename]
        info = max(infos, key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def flip(path, at, out=None):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    out = out or path
    out.write_bytes(bytes(data))
    return out


def loaders(path):
    """Every way mlcore reads a checkpoint: resume's safe_load, evaluate's
    load_weights_file, model.weights' load_weights, read_weights."""
    return {"safe_load": lambda: safe_load(path), "load_weights_file": lambda: load_weights_file(Net(), path),
            "load_weights": lambda: load_weights(Net(), path), "read_weights": lambda: read_weights(path)}


def test_a_checkpoint_ends_with_its_checksum_and_loads_everywhere(tmp_path):
    path, want = write(tmp_path)
    assert path.stat().st_size > 2 * CHECKSUM_CHUNK  # several chunks: hashed on worker threads
    assert path.read_bytes()[-TRAILER_LENGTH:].startswith(CHECKSUM_TAG)
    assert verify_checkpoint(path) is True
    assert same(torch.load(path, weights_only=True)["model"], want)  # plain torch still reads it
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None and zf.comment.startswith(CHECKSUM_TAG)
    assert safe_load(path)["epoch"] == 3 and same(read_weights(path), want)
    model = Net()
    load_weights_file(model, path)
    assert same(model.state_dict(), want)
    assert not list(tmp_path.glob(".*.tmp-*"))
    # a small (single-chunk) checkpoint too
    small = {"format": CHECKPOINT_FORMAT, "version": VERSION, "x": torch.arange(5)}
    atomic_save(small, tmp_path / "small.pt")
    assert verify_checkpoint(tmp_path / "small.pt")
    assert torch.equal(safe_load(tmp_path / "small.pt")["x"], torch.arange(5))


def test_flipped_bytes_in_tensor_data_load_silently_in_torch_but_are_refused_by_mlcore(tmp_path):
    path, want = write(tmp_path)
    start, size = data_span(path)
    bad = flip(path, start + size // 2, tmp_path / "bad.pt")
    # torch does not check the zip's CRCs: the damaged file loads, with a wrong weight
    silently = torch.load(bad, weights_only=True)["model"]
    assert not same(silently, want)
    for name, load in loaders(bad).items():
        with pytest.raises(CheckpointDamaged, match=r"'.*bad\.pt' is damaged: its content no longer matches "
                                                    r"the checksum"):
            load()
    with pytest.raises(CheckpointDamaged, match="bad.pt"):
        verify_checkpoint(bad)


@pytest.mark.parametrize("where", ["first byte", "pickle", "zip directory", "end record", "checksum digits",
                                   "checksum tag", "comment length"])
def test_a_flipped_byte_anywhere_is_an_error_naming_the_file(tmp_path, where):
    path, _ = write(tmp_path)
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        pkl = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
        directory = zf.start_dir
    at = {"first byte": 0, "pickle": pkl.header_offset + 60 + pkl.file_size // 2,
          "zip directory": directory + 10, "end record": size - TRAILER_LENGTH - 10,
          "checksum digits": size - 5, "checksum tag": size - TRAILER_LENGTH + 2,
          "comment length": size - TRAILER_LENGTH - 1}[where]
    flip(path, at)
    for load in loaders(path).values():
        with pytest.raises(MlcoreError, match=r"'.*ckpt\.pt'"):
            load()


@pytest.mark.parametrize("keep", ["half", "all but one byte", "all but the checksum's digits",
                                  "all but the checksum", "the first 100 bytes"])
def test_a_truncated_checkpoint_is_an_error_naming_the_file(tmp_path, keep):
    path, _ = write(tmp_path)
    data = path.read_bytes()
    n = {"half": len(data) // 2, "all but one byte": len(data) - 1,
         "all but the checksum's digits": len(data) - 64, "all but the checksum": len(data) - TRAILER_LENGTH,
         "the first 100 bytes": 100}[keep]
    path.write_bytes(data[:n])
    for load in loaders(path).values():
        with pytest.raises(CheckpointDamaged, match=r"'.*ckpt\.pt' .*(damaged|truncated)"):
            load()


@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04"])
def test_random_bytes_are_an_error_naming_the_file(tmp_path, prefix):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(prefix + os.urandom(3 << 20))
    for load in loaders(junk).values():
        with pytest.raises(MlcoreError, match=r"'.*junk\.pt' is not a readable PyTorch checkpoint"):
            load()
    assert verify_checkpoint(junk) is False  # no checksum to check: not an mlcore checkpoint at all


def test_files_from_elsewhere_and_old_mlcore_checkpoints_load_as_before(tmp_path):
    want = net(1).state_dict()
    torch.save(want, tmp_path / "torchvision_style.pth")  # a plain state dict, as torchvision publishes
    torch.save({"state_dict": want, "epoch": 9}, tmp_path / "official.pth")  # another trainer's container
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "model": want}, tmp_path / "mlcore_v1.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "model": want}, tmp_path / "mlcore_untagged.pt")
    for name in ("torchvision_style.pth", "official.pth", "mlcore_v1.pt", "mlcore_untagged.pt"):
        path = tmp_path / name
        assert verify_checkpoint(path) is False, name
        model = Net()
        load_weights(model, path)
        assert same(model.state_dict(), want), name
        assert same(read_weights(path), want), name
    assert safe_load(tmp_path / "mlcore_v1.pt")["version"] == 1
    # an mlcore checkpoint edited by hand and re-saved with plain torch.save: no checksum, read as it is
    path, _ = write(tmp_path, "edited.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["epoch"] = 7
    torch.save(ckpt, path)
    assert verify_checkpoint(path) is False and safe_load(path)["epoch"] == 7


def test_the_checksum_does_not_depend_on_how_torch_cut_its_writes(tmp_path):
    """Tensors of odd sizes put the chunk boundaries inside records and inside writes."""
    torch.manual_seed(0)
    state = {f"t{i}": torch.randn(n) for i, n in enumerate([3, 1_048_577, 5, 2_000_003, 7, 999_999])}
    atomic_save(state, tmp_path / "odd.pt")
    assert verify_checkpoint(tmp_path / "odd.pt")
    assert same(safe_load(tmp_path / "odd.pt"), state)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run's folder (trained once for this module)."""
    where = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(where / "run")
    cfg["tensorboard"] = False
    mlcore.build(cfg).fit()
    return where / "run"


def _train(tmp_path, trained):
    """A copy of the trained run, and a config that writes into it."""
    shutil.copytree(trained, tmp_path / "run")
    cfg = tiny_config(tmp_path / "run")
    cfg["tensorboard"] = False
    path = write_yaml(tmp_path / "c.yaml", cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    assert verify_checkpoint(ckpts / "last.pt") and verify_checkpoint(ckpts / "best.pt")
    return path, ckpts


def test_resume_from_a_damaged_last_pt_names_it_and_says_whether_best_pt_is_intact(tmp_path, trained):
    cfg, ckpts = _train(tmp_path, trained)
    start, size = data_span(ckpts / "last.pt")
    flip(ckpts / "last.pt", start + size // 2)
    proc = run_cli("train", cfg, "--resume")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    assert f"{str(ckpts / 'last.pt')!r} is damaged" in err
    assert f"{str(ckpts / 'best.pt')!r} beside it is intact" in err
    assert f"mlcore evaluate {cfg} --checkpoint {ckpts / 'best.pt'}" in err
    assert not (tmp_path / "run" / ".lock").exists()

    start, size = data_span(ckpts / "best.pt")
    flip(ckpts / "best.pt", start + size // 3)
    both = run_cli("train", cfg, "--resume")
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert f"{str(ckpts / 'best.pt')!r} beside it is damaged too" in both.stderr

    (ckpts / "best.pt").unlink()
    none = run_cli("train", cfg, "--resume")
    assert none.returncode == 2 and "best.pt' either" in none.stderr


def test_evaluate_with_a_damaged_checkpoint_exits_2_naming_it(tmp_path, trained):
    cfg, ckpts = _train(tmp_path, trained)
    start, size = data_span(ckpts / "best.pt")
    damaged = flip(ckpts / "best.pt", start + size // 2, tmp_path / "damaged.pt")
    proc = run_cli("evaluate", cfg, "--checkpoint", damaged)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "damaged.pt' is damaged" in proc.stderr
    cut = tmp_path / "cut.pt"
    cut.write_bytes((ckpts / "best.pt").read_bytes()[:1000])
    proc = run_cli("evaluate", cfg, "--checkpoint", cut)
    assert proc.returncode == 2 and "cut.pt' is not a readable PyTorch checkpoint" in proc.stderr
