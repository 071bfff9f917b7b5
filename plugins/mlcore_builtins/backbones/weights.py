"""Loading local pretrained weights (torchvision ``.pth``, timm ``.pth``/``.safetensors``).

Nothing is downloaded: the user gives a path. Files are read with
``torch.load(weights_only=True)`` (or safetensors), so no code runs from them.
"""
from __future__ import annotations

import os

import torch

from mlcore.errors import MlcoreError


def read_state_dict(path: str) -> dict:
    if not os.path.isfile(path):
        raise MlcoreError(f"pretrained weights file {path!r} does not exist; download the weights "
                          f"(e.g. torchvision's resnet101-63fe2227.pth) and give their local path")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:
            raise MlcoreError(f"{path!r} is not a readable safetensors file: {exc}") from None
    from mlcore.engine.checkpoint import safe_load

    obj = safe_load(path)
    for key in ("state_dict", "model", "model_state_dict"):  # common wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise MlcoreError(f"{path!r} holds no state dict")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_pretrained(module: torch.nn.Module, path: str, ignore: tuple[str, ...] = ()) -> None:
    """Load ``path`` into ``module``; keys starting with an ``ignore`` prefix (the
    classification head) are dropped. Any other mismatch is an error naming the keys."""
    from mlcore.engine.checkpoint import load_model_weights

    load_model_weights(module, read_state_dict(path), path, ignore=ignore, what="pretrained weights",
                       hint="weights of another architecture?")
