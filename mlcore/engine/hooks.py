"""The active hook plugins of one run: started, checked against the specs, called.

Each hook plugin is instantiated from its config section and registered under its
registered name. Its contract is checked at once: a ``hookimpl`` that names no hook of
``mlcore/hookspecs.py`` (a misspelling would otherwise never be called) or takes an
argument its hook does not give is an error naming the plugin, its distribution and the
hook. Saved state is per plugin: ``mlcore_state_dict`` of plugin ``x`` is kept under
``x`` and handed back to the same plugin's ``mlcore_load_state_dict``.
"""
from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

import pluggy

from .. import hookspecs
from ..errors import PluginError


class HookPlugins:
    """The hook plugins of a run; ``hook`` calls every implementation of a hook."""

    def __init__(self, specs: list):
        self.manager = pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        self._where = {spec.name: _who(spec) for spec in specs}
        for spec in specs:
            try:
                obj = spec.plugin.instantiate(spec.cfg)
            except Exception as exc:
                raise PluginError(f"{self._where[spec.name]} failed to start: {type(exc).__name__}: {exc}") from exc
            try:
                pm.register(obj, name=spec.name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"{self._where[spec.name]}: {_explain(exc)}") from None
            self._check_names(spec.name, obj)
        self.hook = pm.hook

    def _check_names(self, name: str, obj: Any) -> None:
        for caller in self.manager.get_hookcallers(obj) or []:
            if not caller.has_spec():
                known = [n for n in dir(hookspecs) if n.startswith("mlcore_")]
                from ..errors import did_you_mean

                raise PluginError(f"{self._where[name]} implements an unknown hook '{caller.name}'"
                                  f"{did_you_mean(caller.name, known)}; the hooks are: {', '.join(known)}")
        self.manager.check_pending()  # nothing left unchecked

    def _impls(self, hook: str) -> list:
        return getattr(self.manager.hook, hook).get_hookimpls()

    def state_dict(self, trainer: Any) -> dict[str, Any]:
        """Each plugin's own state, under its registered name (plugins returning None are left out)."""
        out = {}
        for impl in self._impls("mlcore_state_dict"):
            state = _call(impl, trainer=trainer)
            if state is not None:
                out[impl.plugin_name] = state
        return out

    def load_state_dict(self, trainer: Any, states: dict[str, Any]) -> None:
        """Hand each plugin the state it saved (plugins that saved none are not called)."""
        for impl in self._impls("mlcore_load_state_dict"):
            if states.get(impl.plugin_name) is not None:
                _call(impl, trainer=trainer, state=states[impl.plugin_name])

    def train_end(self, trainer: Any, reason: str) -> None:
        """``mlcore_train_end`` on every plugin. With ``reason="error"`` an exception is on
        its way out: a plugin failing here is only warned about, so it never hides it."""
        if reason != "error":
            self.hook.mlcore_train_end(trainer=trainer, reason=reason)
            return
        for impl in reversed(self._impls("mlcore_train_end")):
            try:
                _call(impl, trainer=trainer, reason=reason)
            except Exception as exc:  # the original error matters more
                warnings.warn(f"{self._where.get(impl.plugin_name, impl.plugin_name)}: mlcore_train_end failed "
                              f"while training was ending on an error: {type(exc).__name__}: {exc}", stacklevel=2)


def _explain(exc: Exception) -> str:
    """pluggy's several-line complaint about an implementation's arguments, in one line."""
    text = str(exc)
    hook = re.search(r"for hook '(\w+)'", text)
    extra = re.search(r"Argument\(s\) \{(.*?)\} are declared", text)
    if not (hook and extra and hasattr(hookspecs, hook.group(1))):
        return " ".join(text.split())
    gives = ", ".join(inspect.signature(getattr(hookspecs, hook.group(1))).parameters)
    return (f"its {hook.group(1)} takes {extra.group(1)}, which the hook does not give "
            f"(it gives {gives})")


def _who(spec: Any) -> str:
    dist = f" from distribution '{spec.distribution}'" if getattr(spec, "distribution", "") else ""
    return f"hook plugin '{spec.name}'{dist}"


def _call(impl: Any, **kwargs: Any) -> Any:
    """Call one implementation with the arguments it takes (pluggy allows a subset)."""
    return impl.function(*[kwargs[a] for a in impl.argnames])
