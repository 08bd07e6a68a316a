"""``probe.track``: the diagnostics of ``probe analyze`` inside your own training loop.

::

    with probe.track(model, path="runs/history.jsonl", every=10) as tracker:
        for x, y in loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(); loss.backward(); opt.step()
            tracker.step(loss)          # the loss is optional

Forward hooks on the hidden ``nn.Linear`` layers of *your* model (not a copy;
a deep copy or a pickle of the model gets inert hooks in their place,
:mod:`probe.models.borrowed_hooks`, so ``torch.save(model)`` and an EMA copy work
mid-run) read each recorded batch's input ``x`` and pre-activation ``z``, a hook on the
backward node that made ``z`` receives ``g = dL/dz`` from your own backward pass
(with the weight and bias gradients that node computes from it; for a weight
that is frozen, cast by autocast or parametrized, a hook on ``z`` itself), and
a forward hook on the final Linear reads its input for the sign routes. Steps
are numbered from 0 by the calls to :meth:`Tracker.step`; step ``s`` is
recorded when ``s`` is a multiple of ``every``. The hooks are attached for the steps to record
only: between records the model runs with no hook at all, and ``step()``
costs a counter check. A recorded step covers every forward pass with
autograd since the previous ``step()`` call (several with gradient
accumulation); forward passes without autograd (evaluation under
``torch.no_grad``) are not recorded. The weights are those of the forward
pass, before ``opt.step()``. What is computed, and how, is in
:mod:`probe.engines.track_batch` and :mod:`probe.engines.track_record`.

The record of a step (one JSON line, or a dict in ``tracker.history``):

* ``step``, ``loss`` (when given), ``time`` (Unix time), ``elapsed`` (seconds
  since the tracker opened), ``samples`` (rows in the step's batches), ``collapsed``;
* ``layers``: per hidden layer, the keys of ``probe analyze --json`` computed on
  the step's batches (``dead_units``, ``dead_rate``, ``near_dead_units``,
  ``dormant_units``, ``active_fraction_*``, ``act_*``, ``grad_ratio``,
  ``upstream_ratio``, ``neg_grad_share``, ...; the gradient keys are missing
  when no backward pass reached the layer), plus ``window_dead_units``,
  ``window_dead_share``, ``revived_units`` and ``window_records``
  (:mod:`probe.engines.track_window`);
* ``sign``: the final layer's sign routes per output, as in ``probe analyze``;
* ``alerts``: the alerts raised at this step (also logged on the
  ``probe.track`` logger and passed to ``on_alert``).

Hooks are borrowed state: they are removed when the ``with`` block ends, also
on an exception or Ctrl-C, and probe never changes ``model.training``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from probe.core.checks import check_fraction
from probe.core.errors import ProbeError
from probe.core.version import __version__
from probe.diagnostics.results import collapsed
from probe.engines import track_notices as notices
from probe.engines.track_general import GeneralStep
from probe.engines.track_io import FORMAT, LineWriter, read_lines
from probe.engines.track_ledger import Scratch, ledger_layout, sign_layout
from probe.engines.track_model import slope_reader, user_layers
from probe.engines.track_state import FastStep
from probe.engines.track_window import AlertMonitor, DeadWindow
from probe.models.borrowed_hooks import attach_forward

log = logging.getLogger("probe.track")


class Tracker:
    """Records probe's diagnostics on every ``every``-th step of a training loop.

    Use :func:`track` (a context manager); ``open()``/``close()`` are for
    frameworks that have no ``with`` block around training (see
    :mod:`probe.integrations.lightning`). See the module docstring for the record.

    Args:
        model: The ``nn.Module`` you train (any MLP ``probe analyze`` accepts, or a
            ``LoadedModel`` whose ``.mlp`` you train).
        path: JSON-lines file for the records (replaced if it exists); None keeps
            them in memory (:attr:`history`).
        every: Record steps 0, every, 2 * every, ...
        window: Recorded steps over which a unit must stay inactive to count as
            window-dead, and over which growth alerts are measured.
        alert_dead_share: Alert when a layer's window-dead share reaches this (None: never).
        alert_growth: Alert when it grows by more than this many share points
            within the window (None: never).
        on_alert: Called with each alert's dict, after it is recorded and logged.
        near_dead_threshold, dormant_tau: As in ``probe analyze``.
        gradient_split: Split each layer's weight gradient by the sign of ``z``
            (``neg_grad_share``, ``neg_grad_fraction``, ``weight_grad_norm_*``). Where
            the activation passes gradient at ``z <= 0`` (leaky ReLU, PReLU, ELU,
            GELU, ...) this costs one matrix product per layer and recorded batch
            (two for a model with norms or smooth activations), the largest
            single cost of a record; False leaves those keys as analyze
            does without the split (None, and 0.0 for the norms).
        sign_target: ``"logit"``: the sign routes of each output itself; ``"margin"``:
            of each class's logit margin, as ``probe analyze`` reports a classifier
            trained with cross-entropy (see :mod:`probe.diagnostics.margin`).
    """

    def __init__(self, model: object, path: str | Path | None = None, *, every: int = 1, window: int = 20,
                 alert_dead_share: float | None = 0.25, alert_growth: float | None = 0.10,
                 on_alert: Callable[[dict], object] | None = None, near_dead_threshold: float = 0.01,
                 dormant_tau: float = 0.025, gradient_split: bool = True, sign_target: str = "logit") -> None:
        self.every = notices.positive_int("every", every)
        self.window = notices.positive_int("window", window)
        for name, value in (("alert_dead_share", alert_dead_share), ("alert_growth", alert_growth)):
            if value is not None:
                check_fraction(name, value)
        if on_alert is not None and not callable(on_alert):
            raise ProbeError("on_alert must be callable", expected="a function taking the alert's dict",
                             found=type(on_alert).__name__, fix="pass on_alert=print, for instance")
        self.near_dead_threshold = check_fraction("near_dead_threshold", near_dead_threshold)
        self.dormant_tau = check_fraction("dormant_tau", dormant_tau)
        if not isinstance(gradient_split, bool):
            raise ProbeError("gradient_split must be True or False", expected="a bool",
                             found=repr(gradient_split), fix="pass gradient_split=False to skip the split")
        self.gradient_split = gradient_split
        self.model, linears, acts, self.architecture, self.general = user_layers(model)
        self.hidden, self.final = linears[:-1], linears[-1]
        self.margin = notices.check_sign_target(sign_target, self.final.out_features)
        self._acts = acts
        self._slopes = [] if self.general else [slope_reader(act) for act in acts]
        self.path = None if path is None else Path(path).expanduser()
        self.on_alert = on_alert
        self.header = {"format": FORMAT, "probe": __version__, "torch": torch.__version__,
                       "model": self.architecture, "units": [lin.out_features for lin in self.hidden],
                       "every": self.every, "window": self.window, "alert_dead_share": alert_dead_share,
                       "alert_growth": alert_growth, "near_dead_threshold": self.near_dead_threshold,
                       "dormant_tau": self.dormant_tau, "gradient_split": gradient_split,
                       "sign_target": sign_target}
        self.steps = 0  # calls of step() so far: the number of the step now running
        self.last: dict | None = None
        self.alerts: list[dict] = []
        self._window = DeadWindow(self.window)
        self._monitor = AlertMonitor(self.window, alert_dead_share, alert_growth)
        self._records: list[dict] = []
        self._scratch = [Scratch() for _ in range(len(self.hidden) + 1)]
        self._ledger_sizes = [ledger_layout(lin.out_features)[1] for lin in self.hidden] + [
            sign_layout(self.final.out_features, self.final.in_features)[1]]  # the step ledger's parts
        self._current: FastStep | None = None
        self._handles: list = []
        self._open = False
        self._writer: LineWriter | None = None
        self._started = 0.0
        self._warned: set[str] = set()

    def _new_state(self) -> FastStep | GeneralStep:
        if self.general:
            return GeneralStep(self.hidden, self._acts, self.final, self.near_dead_threshold, self.dormant_tau,
                               self.gradient_split, self.margin)
        return FastStep(self.hidden, self.final, self._scratch, self.gradient_split, self._ledger_sizes,
                          self.margin)

    # -- borrowing the model -------------------------------------------------------------------------

    def open(self) -> Tracker:
        """Start the history and arm step 0 (every run records its first step)."""
        if self._open:
            raise ProbeError("This tracker is already open", expected="one open() per tracker",
                             found="a second open()", fix="use a new probe.track(...) for a new run")
        try:
            if self.path is not None:
                self._writer = LineWriter(self.path)
            self._started = time.perf_counter()
            self.header["started"] = time.time()
            if self._writer is not None:
                self._writer.write(self.header)
            self._open = True
            self._arm()
        except BaseException:
            self.close()
            raise
        return self

    def close(self, *, failed: bool = False) -> None:
        """Remove every hook and close the history file (idempotent).

        ``failed``: the loop ended with an exception (no word then on a missing ``step()``).
        """
        if not failed and self._open and self.steps == 0 and self._current is not None and \
                self._current.saw_forward:
            self._warn_once("never", notices.NEVER_STEPPED)
        self._open = False
        if self._current is not None:  # its hooks may still fire: keep them off the scratch
            self._current.close()
        self._current = None
        self._detach()
        if self._writer is not None:
            self._writer.close()

    def _arm(self) -> None:
        """Hooks on, with a fresh state, for a step to record; off (none at all) for the others."""
        if self._open and self.steps % self.every == 0:
            self._current = self._new_state()
            if self.general:  # hooks that feed this step's own Collector
                self._detach()
                self._handles.extend(self._current.attach())
            elif not self._hooked_last():  # after every hook of the user's: z as the activation gets it
                self._detach()
                for i, lin in enumerate(self.hidden):
                    self._handles.append(attach_forward(lin, self._hidden_hook(i)))
                self._handles.append(attach_forward(self.final, self._final_hook))
        else:
            self._current = None
            self._detach()

    def _hooked_last(self) -> bool:
        """Whether probe's forward hooks are on, each the last of its module's (run after the user's own)."""
        return bool(self._handles) and all(next(reversed(module._forward_hooks), None) == handle.id
                                           for module, handle in zip([*self.hidden, self.final], self._handles))

    @property
    def is_open(self) -> bool:
        """Whether the hooks are on: between ``open()`` (entering the ``with`` block) and ``close()``."""
        return self._open

    @property
    def recording(self) -> bool:
        """Whether the step now running (``steps``) will be recorded when :meth:`step` closes it."""
        return self._current is not None

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Tracker:
        return self.open()

    def __exit__(self, kind: type | None, *exc: object) -> None:
        self.close(failed=kind is not None)

    def _hidden_hook(self, layer: int):
        slope = self._slopes[layer]

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            state = self._current
            if state is None or not torch.is_grad_enabled() or not output.numel():
                return  # closed, an evaluation (no_grad, inference_mode), or an empty batch
            if layer:
                state.layers[layer - 1].watch_relu(inputs[0])
            state.layers[layer].forward(module, inputs[0], output, notices.check_slope(slope(), output))

        return hook

    def _final_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        state = self._current
        if state is None or not torch.is_grad_enabled() or not output.numel():
            return
        state.sign.forward(module, inputs[0], state.layers[-1].watch_relu(inputs[0]))

    # -- the loop's side -----------------------------------------------------------------------------

    def step(self, loss: object = None) -> dict | None:
        """Close the current step: on a recorded step, build and write its record (returned).

        Call it once per optimizer step, after ``loss.backward()`` (and
        ``opt.step()``). ``loss`` may be a number or a one-element tensor.
        """
        if not self._open:
            raise ProbeError("tracker.step() on a tracker that is not open", expected="a tracker inside its with block",
                             found="closed" if self._started else "never opened",
                             fix="with probe.track(model, ...) as tracker: ... tracker.step(loss) inside the block")
        state, step = self._current, self.steps
        record = None
        if state is not None:
            value = None if loss is None else notices.loss_value(loss)
            if value is not None and not math.isfinite(value):
                self._warn_once("diverged", f"step {step}: the loss is {value}: training has diverged; this "
                                "and later records describe non-finite values (null in the history file)")
            record = self._record(state, step, value)
        self.steps += 1
        self._arm()
        if record is not None:
            for alert in record["alerts"]:
                log.warning(self._tagged(alert["message"]))
                if self.on_alert is not None:
                    self.on_alert(alert)
        return record

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(self._tagged(message))

    def _tagged(self, message: str) -> str:
        """A log line that names the run (its history file), so that two runs' lines can be told apart."""
        return message if self.path is None else f"{self.path}: {message}"

    def _record(self, state: FastStep | GeneralStep, step: int, loss: float | None) -> dict | None:
        if not state.finish():
            return self._no_forward(step)
        if state.missing_gradient:
            self._warn_once("backward", notices.no_backward(step))
        layers, sign, active, samples = state.parts(self.near_dead_threshold, self.dormant_tau)
        untrained = state.untrained_rows()
        if untrained:
            self._warn_once("untrained", notices.untrained(step, untrained, samples))
        return self._write(step, loss, layers, sign, active, samples)

    def _no_forward(self, step: int) -> None:
        self._warn_once("forward", notices.no_forward(step))

    def _write(self, step: int, loss: float | None, layers: list[dict], sign: list[dict], active: np.ndarray,
               samples: int) -> dict:
        counts = self._window.update(active, tuple(doc["units"] for doc in layers))
        alerts = [a.to_dict() for a in self._monitor.update(step, [c.window_dead_share for c in counts])]
        for doc, count in zip(layers, counts):
            doc.update(vars(count))
        record: dict = {"step": step}
        if loss is not None:
            record["loss"] = loss
        record.update({
            "time": round(time.time(), 3), "elapsed": round(time.perf_counter() - self._started, 6),
            "samples": samples,
            "collapsed": collapsed((doc["dead_units"], doc["units"]) for doc in layers),
            "layers": layers, "sign": sign, "alerts": alerts,
        })
        if self._writer is not None:
            self._writer.write(record)
        else:
            self._records.append(record)
        self.last = record
        self.alerts.extend(alerts)
        return record

    @property
    def history(self) -> list[dict]:
        """Every record so far: kept in memory without a path, read back from the file with one."""
        if self.path is None:
            return self._records
        return read_lines(self.path)[1]


def track(model: object, path: str | Path | None = None, *, every: int = 1, window: int = 20,
          alert_dead_share: float | None = 0.25, alert_growth: float | None = 0.10,
          on_alert: Callable[[dict], object] | None = None, **options) -> Tracker:
    """``with probe.track(model, "runs/history.jsonl", every=10) as tracker: ... tracker.step(loss)``.

    Returns a :class:`Tracker`, which hooks the model when the ``with`` block is
    entered and unhooks it when the block ends. Arguments as in :class:`Tracker`
    (``near_dead_threshold``, ``dormant_tau`` and ``gradient_split`` go through ``options``).
    """
    return Tracker(model, path, every=every, window=window, alert_dead_share=alert_dead_share,
                   alert_growth=alert_growth, on_alert=on_alert, **options)
