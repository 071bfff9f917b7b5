"""Freezing a backbone: the framework's one policy, shared by every model that takes one.

The seed fine-tuned only ResNet's last stage on top of ImageNet features; SSGRL's official
code does the same. Written once here, every model plugin gets it by passing ``freeze``
to :func:`mlcore.create_backbone`, and every backbone built to the documented contract
(``out_dim`` and an optional ``last_stage()``) works under every policy.

Policies (:data:`FREEZE_POLICIES`):

``none``
    everything trains;
``all``
    no parameter of the backbone trains (a fixed feature extractor);
``all_but_last``
    only ``backbone.last_stage()`` trains. A backbone that declares no stages (no
    ``last_stage``) trains whole, with one warning naming its class: guessing its
    last stage from module order could silently train the wrong part.

A frozen BatchNorm layer must also keep its running statistics (the ImageNet ones the
weights were trained with), so it has to stay in eval mode. Overriding the model's
``train()`` (as SSGRL once did) works only for the model that does it. Instead each
frozen BatchNorm layer gets a forward pre-hook that sets its ``training`` flag to False
just before it runs. The hook is chosen because it:

* survives ``model.train()`` — whatever the flag says, it is False when the layer runs;
* survives ``copy.deepcopy(model)`` (the EMA copies the model) and pickling — the hook is
  a module-level function, copied by reference, and it acts on the module it is called
  with, so the copy's layers stay frozen too;
* leaves ``state_dict()`` untouched: no buffer, parameter or wrapper module is added,
  so checkpoints and weight files keep the same keys as with ``freeze: none``.

The one thing it does not do is change what ``layer.training`` reads between
``model.train()`` and the next forward pass.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .errors import MlcoreError

if TYPE_CHECKING:
    from torch import nn

#: the values of ``freeze`` a model plugin accepts
FREEZE_POLICIES = ("none", "all", "all_but_last")


def freeze_backbone(backbone: nn.Module, policy: str) -> None:
    """Apply the freezing ``policy`` (one of :data:`FREEZE_POLICIES`) to ``backbone`` in place.

    Parameters outside the part left trainable get ``requires_grad=False``; BatchNorm
    layers outside it keep their running statistics (see the module docstring for how).
    """
    if policy not in FREEZE_POLICIES:
        raise MlcoreError(f"Unknown value {policy!r} for argument freeze. "
                          f"Valid values are {set(FREEZE_POLICIES)}")
    if policy == "none":
        return
    keep = None
    if policy == "all_but_last":
        keep = _last_stage(backbone)
        if keep is None:
            return
    trainable = {id(p) for p in keep.parameters()} if keep is not None else set()
    for p in backbone.parameters():
        p.requires_grad_(id(p) in trainable)
    inside = {id(m) for m in keep.modules()} if keep is not None else set()
    for m in backbone.modules():
        if _is_batchnorm(m) and id(m) not in inside:
            m.eval()
            if _keep_in_eval not in m._forward_pre_hooks.values():  # freezing twice adds no second hook
                m.register_forward_pre_hook(_keep_in_eval)


def _last_stage(backbone: nn.Module) -> nn.Module | None:
    """The backbone's ``last_stage()``, or None (with a warning) when it declares none."""
    stage = getattr(backbone, "last_stage", None)
    module = stage() if callable(stage) else None
    if module is None:
        warnings.warn(f"backbone {type(backbone).__name__} declares no stages (no last_stage()), so "
                      f"freeze: all_but_last cannot tell its last stage apart: it is trained whole",
                      UserWarning, stacklevel=3)
    return module


def _is_batchnorm(module: Any) -> bool:
    from torch.nn.modules.batchnorm import _BatchNorm

    return isinstance(module, _BatchNorm)


def _keep_in_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook of a frozen BatchNorm layer: use, never update, its running stats."""
    module.training = False


__all__ = ["FREEZE_POLICIES", "freeze_backbone"]
