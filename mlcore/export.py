"""Export a trained model for deployment (ONNX or TorchScript), and run an exported ONNX
model again — without the config, the plugins or the checkpoint.

**What is exported.** :class:`Deployed` wraps the model with its input pipeline's device
half: a uint8 RGB batch ``[B,3,S,S]`` at the model's evaluation crop size ``S``
(``data.crop_size``) goes in; it is normalized exactly as the engine does
(``(x - 255·mean) / (255·std)``, i.e. ``x/255`` then mean/std — recipes with
``mean: [0,0,0]``, ``std: [1,1,1]`` just divide by 255); the model runs; per-class sigmoid
probabilities ``[B,C]`` come out. Resizing and cropping (``scale_size``², centre
``crop_size``²) stay outside: images come in all sizes, and the exported graph takes one.
:class:`OnnxModel` does that part the way the evaluation transform does, from the sizes
kept in the metadata.

**Exporter.** ONNX uses torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``,
which needs onnxscript): it is the supported one on torch 2.x — the TorchScript-based
exporter is deprecated — and it exports every built-in model with a symbolic batch
dimension. The legacy exporter still runs on torch 2.14, but it traces: a size computed
from the batch in Python (SSGRL's label chunking) becomes a constant and the graph is
wrong at any other batch size, which only a check at a second batch size would notice.
TorchScript uses ``torch.jit.trace`` (scripting fails on most models). Both are checked at
two batch sizes (:data:`VERIFY_BATCHES`) for that reason.

**Verification.** Before anything is written, the exported model (onnxruntime on the
CPU, or the TorchScript file reloaded with ``torch.jit.load``) and PyTorch eager score the
same random uint8 batch; the largest absolute difference of the probabilities must be
within :data:`TOLERANCE`, else :class:`~mlcore.MlcoreError` and no file. The file is
written atomically (temp file + rename), so a failed export leaves nothing behind.

**Metadata** (ONNX ``metadata_props``; TorchScript: the same key/value strings as one JSON
object in the extra file ``mlcore.json``): ``classes`` (JSON list, output order),
``input_size`` (S), ``resize_size`` (the evaluation resize before the centre crop),
``mean``/``std`` (JSON lists, the normalization inside the graph), ``input`` and
``output`` (what the tensors are), ``model`` (its plugin name), ``mlcore_version``,
``checkpoint`` (path), ``checkpoint_sha256`` (the mlcore checksum written with the
checkpoint — what ``thresholds.json`` records — or, for a file without one, the sha256 of
its bytes) and, when ``thresholds.json`` sits beside the checkpoint, ``thresholds`` (JSON
list in class order), ``threshold_objective``, ``threshold_split`` and ``threshold_rule``
(``score >= threshold``), and ``weights``: ``ema`` when the checkpoint's exponential moving
average of the weights was exported (the default when it has one, as ``predict`` uses it),
``raw`` otherwise. Calibrated thresholds are fitted to the raw weights: with the EMA
exported they are left out (a note says so; ``weights="raw"`` exports the raw weights with
them).

**Default output:** ``<output_dir>/export/model.onnx`` (``model.pt`` for TorchScript), the
run's folder beside ``checkpoints/``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import MlcoreError

if TYPE_CHECKING:  # torch is imported on use: `mlcore --help` stays light
    import numpy as np
    import torch

    from .experiment import Experiment

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4
#: batch sizes of the check: 2 (the one required), then 1 — a batch size other than the
#: traced one, so a batch size frozen into the graph cannot pass
VERIFY_BATCHES = (2, 1)
EXTRA_FILE = "mlcore.json"
OPSET = 18
INSTALL_HINT = "pip install 'mlcore[export]'"


# -- the exported module --------------------------------------------------------------------
def _deployed_class():
    import torch
    from torch import nn

    class Deployed(nn.Module):
        """uint8 ``[B,3,S,S]`` → normalized float → model → sigmoid probabilities ``[B,C]``."""

        def __init__(self, model: nn.Module, mean, std):
            super().__init__()
            self.model = model
            # the engine's Normalizer, as buffers: the same arithmetic, so the same numbers
            self.register_buffer("mean", torch.tensor([m * 255.0 for m in mean]).view(1, 3, 1, 1))
            self.register_buffer("inv_std", torch.tensor([1.0 / (s * 255.0) for s in std]).view(1, 3, 1, 1))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = (images.to(torch.float32) - self.mean) * self.inv_std
            return torch.sigmoid(self.model(x).float())

    return Deployed


def deployed(model: "torch.nn.Module", mean: Sequence[float], std: Sequence[float]) -> "torch.nn.Module":
    """The model wrapped with its normalization and sigmoid (see the module docstring)."""
    return _deployed_class()(model, mean, std).eval()


# -- export ------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What :func:`export` wrote: the file, its format, the metadata, and the largest
    |exported − PyTorch| difference per checked batch size."""

    path: Path
    format: str
    metadata: dict[str, str]
    differences: dict[int, float]


def default_out(exp: "Experiment", fmt: str) -> Path:
    """``<output_dir>/export/model.onnx`` (``model.pt``): in the run's folder, next to
    ``checkpoints/``, so a run keeps what was trained and what was shipped together."""
    return Path(exp.config.output_dir) / "export" / f"model{SUFFIX[fmt]}"


def export(exp: "Experiment", fmt: str, checkpoint: str | os.PathLike | None = None,
           out: str | os.PathLike | None = None, log: Callable[[str], Any] = print,
           weights: str | None = None) -> ExportResult:
    """Export ``exp``'s model with the weights of ``checkpoint`` (default: the run's
    ``best.pt``) to ``out`` in format ``fmt``, verified against PyTorch first.

    ``weights``: ``"ema"`` or ``"raw"``; by default the checkpoint's EMA when it holds one
    (what ``predict`` uses), else the raw weights. The metadata's ``weights`` says which."""
    if fmt not in FORMATS:
        raise MlcoreError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if weights not in (None, "ema", "raw"):
        raise MlcoreError(f"unknown weights {weights!r}: use 'ema' or 'raw'")
    if fmt == "onnx":
        require_onnx(exporting=True)
    ckpt = Path(checkpoint) if checkpoint is not None else exp.checkpoint_path()
    out = Path(out) if out is not None else default_out(exp, fmt)
    _check_writable(out)
    held = exp.load_checkpoint(ckpt)  # a missing or damaged checkpoint, or other labels: a clear error here
    classes = list(exp.classes)  # the model's output order (a checkpoint's names are compared while loading)
    if weights == "ema" and "ema" not in held:
        raise MlcoreError(f"checkpoint {str(ckpt)!r} holds no EMA of the weights (train.ema was off); "
                          f"export its raw weights")
    use_ema = "ema" in held and weights != "raw"
    if use_ema:
        exp.load_state(held["ema"], str(ckpt))
        log(f"exporting the EMA weights of {ckpt} (--weights raw for the raw ones)")
    meta = metadata(exp, ckpt, classes, log, ema=use_ema)
    d = exp.config.data
    model = deployed(exp.model.cpu().eval(), d.mean, d.std)
    data, diffs = (onnx_bytes if fmt == "onnx" else torchscript_bytes)(model, int(d.crop_size), meta)
    _write(out, data)
    return ExportResult(out, fmt, meta, diffs)


def metadata(exp: "Experiment", ckpt: Path, classes: list[str],
             log: Callable[[str], Any] = print, ema: bool = False) -> dict[str, str]:
    """The metadata strings (see the module docstring), thresholds included when
    ``thresholds.json`` sits beside the checkpoint (checked against its classes and checksum)
    and the raw weights are exported (``ema`` false): they were fitted to those."""
    from . import __version__
    from .thresholds_file import path_beside, read_thresholds
    from .weights import _checksum_of

    d = exp.config.data
    checksum = _checksum_of(str(ckpt))
    meta = {
        "classes": json.dumps(classes),
        "input_size": str(int(d.crop_size)),
        "resize_size": str(int(d.scale_size)),
        "mean": json.dumps([float(v) for v in d.mean]),
        "std": json.dumps([float(v) for v in d.std]),
        "input": "images: uint8 RGB [batch, 3, input_size, input_size] (resize to resize_size², centre crop)",
        "output": "probabilities: float32 [batch, classes] (sigmoid)",
        "model": str(exp.config.model.name),
        "mlcore_version": __version__,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": checksum[1] if checksum else _file_sha256(ckpt),
        "weights": "ema" if ema else "raw",
    }
    beside = path_beside(ckpt)
    if beside.is_file() and ema:
        log(f"calibrated thresholds in {beside} are for the raw weights: left out of the EMA export "
            f"(--weights raw exports the raw weights with them)")
    elif beside.is_file():
        thr = read_thresholds(beside, classes=classes, checkpoint_sha256=checksum[1] if checksum else None)
        meta.update(thresholds=json.dumps([float(t) for t in thr.thresholds]),
                    threshold_objective=thr.objective, threshold_split=thr.split,
                    threshold_rule="score >= threshold")
        log(f"calibrated thresholds from {beside} ({thr.objective} on split {thr.split!r}) go into the "
            f"metadata")
    return meta


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_writable(out: Path) -> None:
    """Fail before the (slow) export when the file cannot be written."""
    if out.is_dir():
        raise MlcoreError(f"cannot write {str(out)!r}: it is a folder (give a file name to --out)")
    folder = next((p for p in [out.parent, *out.parent.parents] if p.exists()), None)
    if folder is not None and (not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK)):
        raise MlcoreError(f"cannot write {str(out)!r}: {str(folder)!r} is not a writable folder")


def _write(out: Path, data: bytes) -> None:
    from .files import write_bytes

    try:
        write_bytes(out, data)
    except OSError as exc:
        raise MlcoreError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from exc


def _example(batch: int, side: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed + batch)
    return torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, generator=g)


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines and warnings, kept off the user's terminal; an error
    still carries its own message."""
    import logging

    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield sink
    finally:
        logging.disable(previous)


def _failed(fmt: str, model, exc: Exception) -> MlcoreError:
    name = type(model.model).__name__
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return MlcoreError(f"the model ({name}) could not be exported to {fmt}: {type(exc).__name__}: {first} "
                       f"(run with --debug for the traceback)")


def onnx_bytes(model: "torch.nn.Module", side: int, meta: dict[str, str]) -> tuple[bytes, dict[int, float]]:
    """The ONNX file's bytes (metadata set) of ``model`` (a :func:`deployed` module) for
    ``side``-pixel inputs, checked with onnxruntime against ``model``; and the differences."""
    import onnx
    import torch

    example = _example(VERIFY_BATCHES[0], side)
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET,
                                        input_names=["images"], output_names=["probabilities"],
                                        dynamic_shapes={"images": {0: torch.export.Dim("batch", max=4096)}},
                                        verbose=False)
        proto = program.model_proto
    except Exception as exc:  # an exporter failure: say which model, keep the cause for --debug
        raise _failed("ONNX", model, exc) from exc
    onnx.helper.set_model_props(proto, meta)
    data = proto.SerializeToString()
    session = _session(data, "the exported model")
    diffs = _verify("onnxruntime", model, side, lambda x: session.run(None, {"images": x.numpy()})[0])
    return data, diffs


def torchscript_bytes(model: "torch.nn.Module", side: int,
                      meta: dict[str, str]) -> tuple[bytes, dict[int, float]]:
    """The TorchScript file's bytes (metadata as ``mlcore.json``), reloaded and checked."""
    import torch

    try:
        with _quiet(), torch.no_grad(), _tolerant_export_probe():
            traced = torch.jit.trace(model, (_example(VERIFY_BATCHES[0], side),), check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files={EXTRA_FILE: json.dumps(meta)})
    except Exception as exc:
        raise _failed("TorchScript", model, exc) from exc
    data = buf.getvalue()
    with _quiet():
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    diffs = _verify("TorchScript", model, side, lambda x: loaded(x).numpy())
    return data, diffs


@contextlib.contextmanager
def _tolerant_export_probe():
    """``torch.jit.trace`` looks through every attribute of every submodule for
    ``@torch.jit.export`` methods with ``hasattr``, so a property that raises anything but
    AttributeError aborts the trace — ML-Decoder's ``class_axes`` does, on purpose, for a
    grouped head (it cannot reorder labels). Such a property is no exported method: while
    tracing, the probe skips attributes that cannot be read instead of failing."""
    import torch._jit_internal as internal

    EXPORT = internal.FunctionModifiers.EXPORT

    def has_exports(mod) -> bool:
        for name in dir(mod):
            try:
                item = getattr(mod, name)
            except Exception:  # a property refusing to answer is not an exported method
                continue
            if callable(item) and internal.get_torchscript_modifier(item) is EXPORT:
                return True
        return False

    original = internal.module_has_exports
    internal.module_has_exports = has_exports
    try:
        yield
    finally:
        internal.module_has_exports = original


def _verify(what: str, model, side: int, run) -> dict[int, float]:
    """Largest |exported − eager| per batch size of :data:`VERIFY_BATCHES`; an error
    beyond :data:`TOLERANCE` (nothing has been written yet)."""
    import numpy as np
    import torch

    diffs = {}
    for batch in VERIFY_BATCHES:
        x = _example(batch, side, seed=1)
        with torch.no_grad():
            want = model(x).numpy()
            got = np.asarray(run(x))
        if got.shape != want.shape:
            raise MlcoreError(f"export check failed: {what} gives shape {got.shape} for a batch of {batch}, "
                              f"PyTorch {want.shape}; nothing was written")
        diffs[batch] = float(np.abs(got.astype(np.float64) - want).max()) if want.size else 0.0
        if not diffs[batch] <= TOLERANCE:  # NaN fails too
            raise MlcoreError(f"export check failed: {what} and PyTorch differ by up to {diffs[batch]:.3g} "
                              f"(tolerance {TOLERANCE:g}) on a random batch of {batch}; nothing was written")
    return diffs


# -- onnx and onnxruntime --------------------------------------------------------------------
def require_onnx(exporting: bool = False) -> None:
    """One clear error when the ``export`` extra is not installed."""
    needed = ["onnx", "onnxruntime"] + (["onnxscript"] if exporting else [])
    missing = []
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MlcoreError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
                          f"ONNX export and prediction need them: {INSTALL_HINT}")


def _session(model: bytes | str, what: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: its warnings are not the user's business
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, …)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MlcoreError(f"{what} is not a readable ONNX model (onnxruntime: {first})") from None


class OnnxModel:
    """An exported model (``mlcore export --format onnx``) run with onnxruntime on the CPU:
    its classes, sizes and calibrated thresholds read from its metadata; images go through
    the evaluation transform (resize to ``resize_size``², centre crop ``input_size``²)."""

    def __init__(self, path: str | os.PathLike):
        require_onnx()
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise MlcoreError(f"model file {self.path!r} does not exist")
        self.session = _session(self.path, repr(self.path))
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if "classes" not in meta or "input_size" not in meta:
            raise MlcoreError(f"{self.path!r} is an ONNX model but not one exported by mlcore (its metadata "
                              f"has no 'classes' and 'input_size'); export one with "
                              f"`mlcore export CONFIG --format onnx`")
        self.metadata = meta
        try:
            self.classes: list[str] = list(json.loads(meta["classes"]))
            self.input_size = int(meta["input_size"])
            self.resize_size = int(meta.get("resize_size", self.input_size))
            self._thresholds = json.loads(meta["thresholds"]) if "thresholds" in meta else None
        except (ValueError, TypeError) as exc:
            raise MlcoreError(f"{self.path!r}: its mlcore metadata is damaged ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name

    @property
    def eval_transform(self):
        from .data.transforms import EvalTransform

        return EvalTransform(self.resize_size, self.input_size)

    def thresholds(self) -> "np.ndarray":
        """The calibrated per-class thresholds kept in the metadata at export."""
        import numpy as np

        if self._thresholds is None and self.metadata.get("weights") == "ema":
            raise MlcoreError(f"{self.path!r} holds the EMA weights and no calibrated thresholds (they are "
                              f"fitted to the raw weights): export with --weights raw to ship them")
        if self._thresholds is None:
            raise MlcoreError(f"{self.path!r} carries no calibrated thresholds: run `mlcore calibrate` on "
                              f"its checkpoint, then export it again")
        return np.asarray(self._thresholds, dtype=np.float64)

    def predict(self, batch: "torch.Tensor", batch_size: int = 32) -> "torch.Tensor":
        """N×C probabilities for a uint8 ``[N,3,S,S]`` batch (already transformed)."""
        import torch

        out = [torch.from_numpy(self.session.run(None, {self.input_name: batch[i:i + batch_size].numpy()})[0])
               for i in range(0, len(batch), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))


def read_torchscript_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an exported TorchScript file (the ``mlcore.json`` extra file)."""
    import torch

    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():  # TorchScript's deprecation notice: the user chose the format
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[EXTRA_FILE])


__all__ = ["FORMATS", "TOLERANCE", "ExportResult", "OnnxModel", "default_out", "deployed", "export",
           "metadata", "onnx_bytes", "read_torchscript_metadata", "require_onnx", "torchscript_bytes"]
