"""Export a trained model for deployment: ONNX (run it with onnxruntime, or with
``mlcore predict model.onnx IMAGE…``) or TorchScript.

The exported model takes a uint8 RGB batch ``[B,3,S,S]`` at the config's crop size
(``data.crop_size``; any batch size) and gives per-class sigmoid probabilities; the
normalization is inside. Its metadata holds the class names, the input and resize
sizes, mean/std, the checkpoint and its checksum, and the calibrated thresholds when
``thresholds.json`` sits beside the checkpoint (``mlcore calibrate``). Before writing,
the exported model and PyTorch score the same random batches and must agree to 1e-4;
the difference is printed, and a failed check writes nothing. Uses the run's
``checkpoints/best.pt`` unless ``--checkpoint`` says otherwise; writes
``<output_dir>/export/model.onnx`` (``model.pt``) unless ``--out`` says otherwise.
When the checkpoint holds an EMA of the weights (``train.ema``), those are exported (as
``predict`` uses them) and the metadata says ``weights: ema``; ``--weights raw`` exports
the raw weights — with the calibrated thresholds, which are fitted to them.
See :mod:`mlcore.export`.
"""
from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a trained model to ONNX or TorchScript, checked against PyTorch"
TAKES_CONFIG = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"),
                   help="onnx (onnxruntime; needs pip install 'mlcore[export]') or torchscript")
    p.add_argument("--checkpoint", metavar="PATH", help="weights to export (default: the run's best.pt)")
    p.add_argument("--out", metavar="FILE",
                   help="where to write (default: <output_dir>/export/model.onnx, or model.pt for "
                        "torchscript)")
    p.add_argument("--weights", choices=("ema", "raw"),
                   help="which weights of the checkpoint: its EMA (the default when it has one) or the raw ones")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint_config import experiment_for_checkpoint
    from ..export import TOLERANCE, export, require_onnx

    if args.format == "onnx":
        require_onnx(exporting=True)  # before anything is built
    # the model, sizes and classes as trained, from the checkpoint: no dataset is read
    exp, path, _ = experiment_for_checkpoint(args.config, args.overrides, args.checkpoint, need_data=False)
    result = export(exp, args.format, checkpoint=path, out=args.out, weights=args.weights)
    checked = ", ".join(f"batch {b}: {d:.2e}" for b, d in result.differences.items())
    runtime = "onnxruntime" if result.format == "onnx" else "the reloaded TorchScript model"
    meta = result.metadata
    print(f"max |{runtime} - PyTorch| on random uint8 batches: {checked} (tolerance {TOLERANCE:g})")
    print(f"input uint8 [batch, 3, {meta['input_size']}, {meta['input_size']}] → probabilities "
          f"[batch, {len(exp.classes)}]{'; calibrated thresholds included' if 'thresholds' in meta else ''}")
    print(f"wrote {result.path} ({'EMA' if meta.get('weights') == 'ema' else 'raw'} weights)")
    return 0
