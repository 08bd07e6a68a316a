"""``analyze``: every diagnostic of a trained MLP over an evaluation set, streamed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from probe.core.data import Dataset, check_data
from probe.diagnostics import Collector, NetworkDiagnostics
from probe.engines.hooks import hook_session
from probe.models import LoadedModel, module_to_mlp
from probe.models.mlp import MLP

LOSSES = {
    "mse": "mean squared error against the targets, averaged over the whole evaluation set",
    "sum": "sum of the outputs (no targets given)",
}


def resolve_loss(loss: str | None, data: Dataset) -> str:
    """The loss to differentiate: as given, else MSE with targets and the sum of outputs without."""
    return loss or ("mse" if data.y is not None else "sum")


def _loss(name: str, out: torch.Tensor, y: torch.Tensor | None, n_total: int) -> torch.Tensor:
    """Batch share of the whole-set loss, so that summed gradients are exact full-set gradients."""
    if name == "mse":
        return ((out - y) ** 2).mean(dim=1).sum() / n_total
    return out.sum()


def diagnose(mlp: MLP, data: Dataset, *, loss: str | None = None, batch_size: int = 4096,
             near_dead_threshold: float = 0.01, dormant_tau: float = 0.025,
             progress: Callable[[int], None] | None = None) -> NetworkDiagnostics:
    """Run every diagnostic of :mod:`probe.diagnostics` over ``data``, batch by batch.

    Args:
        mlp: A canonical MLP (not modified; parameter gradients are discarded).
        data: Evaluation data; targets select the MSE loss, else the sum of outputs.
        loss: ``mse`` or ``sum``; default from whether ``data`` has targets.
        batch_size: Samples per forward/backward pass. Memory does not grow with
            the number of samples.
        near_dead_threshold: Active fraction below which a unit counts as near-dead.
        dormant_tau: ReDo threshold.
        progress: Called with the number of samples done after each batch.
    """
    loss = resolve_loss(loss, data)
    if loss == "mse" and data.y is None:
        raise ValueError("the mse loss needs targets")
    check_data(data, mlp.widths[0], mlp.widths[-1])
    final = mlp.linears[-1]
    bias = None if final.bias is None else final.bias[None]  # the Collector supplies zeros
    # The positive-region weight gradient is the full one (autograd's weight.grad) minus G_neg.
    collector = Collector(len(mlp.hidden_linears), final.weight[None], bias,
                          pos_from_total=True, near_dead_threshold=near_dead_threshold,
                          dormant_tau=dormant_tau)
    n = data.X.shape[0]
    params = list(mlp.parameters())
    saved = [(p.grad, p.requires_grad) for p in params]
    try:
        for p in params:
            p.grad = None  # autograd accumulates in place: never into the caller's tensors
            p.requires_grad_(True)
        with hook_session(mlp, collector):
            for start in range(0, n, batch_size):
                xb = data.X[start:start + batch_size]
                yb = None if data.y is None else data.y[start:start + batch_size]
                out = mlp(xb)
                _loss(loss, out, yb, n).backward()
                if progress is not None:
                    progress(min(start + batch_size, n))
        collector.set_weight_grads([lin.weight.grad.T[None] for lin in mlp.hidden_linears])
    finally:
        for p, (g, req) in zip(params, saved):
            p.grad = g
            p.requires_grad_(req)
    return collector.result(0)


@dataclass(frozen=True)
class AnalysisResult:
    """What ``probe analyze`` reports: the diagnostics plus what was analysed."""

    model: dict
    data: dict
    loss: str
    diagnostics: NetworkDiagnostics
    circuit: object | None = field(default=None, compare=False)  # a probe.circuit.CircuitResult

    def to_dict(self) -> dict:
        from probe.diagnostics.verdict import verdict

        doc = {"model": self.model, "data": self.data,
               "loss": {"name": self.loss, "description": LOSSES[self.loss]},
               **self.diagnostics.to_dict(), "verdict": verdict(self.diagnostics)}
        if self.circuit is not None:
            doc["circuit"] = self.circuit.to_dict()
        return doc


def analyze(model: LoadedModel | nn.Module, data: Dataset, **kwargs) -> AnalysisResult:
    """Analyse a model (a :class:`LoadedModel` or any chain-shaped ``nn.Module``).

    Keyword arguments go to :func:`diagnose`.

    Example:
        >>> from probe import analyze, load_mlp, load_data
        >>> result = analyze(load_mlp("model.pt"), load_data("eval.npz"))  # doctest: +SKIP
        >>> result.diagnostics.layers[0].gradient.grad_ratio  # doctest: +SKIP
    """
    if isinstance(model, LoadedModel):
        mlp, info = model.mlp, model.to_dict()
    else:
        mlp = module_to_mlp(model)
        info = {"path": None, "format": "module", "architecture": mlp.describe(),
                "widths": mlp.widths, "activation": mlp.activation_spec}
    loss = resolve_loss(kwargs.pop("loss", None), data)
    diag = diagnose(mlp, data, loss=loss, **kwargs)
    return AnalysisResult(info, data.to_dict(), loss, diag)
