"""Forward hooks on a user's modules, held outside the modules.

A hook registered with ``module.register_forward_hook`` lives in the module's
``_forward_hooks`` for as long as it is attached. During a run that
``probe.track`` records, that is the user's whole training loop. Meanwhile:

* ``torch.save(model)`` pickles the module with its hooks, and a closure cannot
  be pickled: the user's own checkpointing fails;
* ``copy.deepcopy(model)`` copies the hooks into the copy, so an EMA model or a
  teacher carries probe's hooks from then on.

So the tracker holds its hooks here instead: one process-wide forward hook and
one forward pre-hook (``torch.nn.modules.module.register_module_forward_hook``)
run the hooks held for the module being called, found by identity. The user's
modules stay exactly as they were, whatever the loop does with them.

Process-wide hooks run before a module's own hooks (torch calls them first),
and while any is registered every module call takes torch's slower path with
hooks: on the order of a microsecond per call, for as long as a step is armed.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

ForwardHook = Callable[[nn.Module, tuple, object], None]
PreHook = Callable[[nn.Module, tuple], None]


class HeldHooks:
    """Forward hooks and forward pre-hooks for given modules, run by process-wide hooks (one per kind in use).

    A held hook's return value is ignored: the module's output (or input) is
    never replaced. :meth:`remove` drops every hook and unregisters the two.
    """

    def __init__(self) -> None:
        self._forward: dict[int, tuple[nn.Module, list[ForwardHook]]] = {}
        self._pre: dict[int, tuple[nn.Module, list[PreHook]]] = {}
        self._handles: dict[str, object] = {}  # per kind, the process-wide hook's handle

    def __len__(self) -> int:
        """The number of hooks held."""
        return sum(len(hooks) for _, hooks in (*self._forward.values(), *self._pre.values()))

    def forward(self, module: nn.Module, hook: ForwardHook) -> None:
        """Run ``hook(module, inputs, output)`` after each call of ``module`` (this very object, not a copy)."""
        self._hold(self._forward, module, hook)
        if "forward" not in self._handles:
            self._handles["forward"] = register_module_forward_hook(self._run_forward)

    def pre(self, module: nn.Module, hook: PreHook) -> None:
        """Run ``hook(module, inputs)`` before each call of ``module``."""
        self._hold(self._pre, module, hook)
        if "pre" not in self._handles:
            self._handles["pre"] = register_module_forward_pre_hook(self._run_pre)

    def _hold(self, table: dict, module: nn.Module, hook: Callable) -> None:
        held = table.get(id(module))
        if held is None or held[0] is not module:
            table[id(module)] = held = (module, [])
        held[1].append(hook)

    def _run_forward(self, module: nn.Module, inputs: tuple, output: object) -> None:
        held = self._forward.get(id(module))
        if held is not None and held[0] is module:
            for hook in held[1]:
                hook(module, inputs, output)

    def _run_pre(self, module: nn.Module, inputs: tuple) -> None:
        held = self._pre.get(id(module))
        if held is not None and held[0] is module:
            for hook in held[1]:
                hook(module, inputs)

    def remove(self) -> None:
        """Drop every held hook and unregister the process-wide ones (idempotent)."""
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
        self._forward.clear()
        self._pre.clear()
