"""``diagnose``: every diagnostic of a trained MLP over an evaluation set, streamed through hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from probe.core.checks import as_dataset, check_fraction
from probe.core.data import check_data
from probe.core.errors import DataError
from probe.core.losses import LOSSES, LossMeter, LossSummary, choose_loss, loss_warnings, sample_losses
from probe.diagnostics import Collector, NetworkDiagnostics
from probe.diagnostics.verdict import verdict
from probe.engines.hooks import hook_session
from probe.models.coerce import as_model


def diagnose(model: object, X: object, y: object = None, *, loss: str | None = None, batch_size: int = 4096,
             near_dead_threshold: float = 0.01, dormant_tau: float = 0.025,
             progress: Callable[[int], None] | None = None) -> NetworkDiagnostics:
    """Run every diagnostic of :mod:`probe.diagnostics` over ``X`` (and ``y``), batch by batch.

    Args:
        model: A chain-shaped ``nn.Module``, a probe MLP, a ``LoadedModel`` or a
            model file (not modified; parameter gradients are discarded).
        X: Evaluation inputs (tensor, numpy array, ``Dataset`` or data file).
        y: Targets (float targets or integer class labels), or None.
        loss: ``mse``, ``cross_entropy``, ``bce`` or ``sum``; default inferred from
            the targets (:func:`probe.core.losses.choose_loss`). With
            ``cross_entropy`` the sign routes describe each class's logit margin.
        batch_size: Samples per forward/backward pass. Memory does not grow with
            the number of samples.
        near_dead_threshold: Active fraction below which a unit counts as near-dead.
        dormant_tau: ReDo threshold.
        progress: Called with the number of samples done after each batch.
    """
    return diagnose_with_loss(model, X, y, loss=loss, batch_size=batch_size,
                              near_dead_threshold=near_dead_threshold, dormant_tau=dormant_tau,
                              progress=progress)[0]


def diagnose_with_loss(model: object, X: object, y: object = None, *, loss: str | None = None,
                       batch_size: int = 4096, near_dead_threshold: float = 0.01, dormant_tau: float = 0.025,
                       progress: Callable[[int], None] | None = None) -> tuple[NetworkDiagnostics, LossSummary]:
    """:func:`diagnose`, plus the loss of the model as analysed (the sanity line), from the same pass.

    Returns:
        The diagnostics and a :class:`~probe.core.losses.LossSummary` (mean loss,
        accuracy for classifiers, whether the loss was inferred, warnings on it).
    """
    check_fraction("near_dead_threshold", near_dead_threshold)
    check_fraction("dormant_tau", dormant_tau)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError("batch_size must be a positive integer", expected="an integer >= 1",
                        found=repr(batch_size), fix="pass batch_size=4096")
    mlp = as_model(model).mlp
    data = as_dataset(X, y)
    outputs = mlp.widths[-1]
    loss, inferred = choose_loss(loss, data.y, data.labels, outputs)
    check_data(data, mlp.widths[0], outputs, loss)
    # cross_entropy: int64 labels [N]; the other losses take the float targets as they are
    targets = data.y[:, 0].long() if loss == "cross_entropy" else data.y
    final = mlp.linears[-1]
    bias = None if final.bias is None else final.bias[None]  # the Collector supplies zeros
    # The positive-region weight gradient is the full one (autograd's weight.grad) minus G_neg.
    collector = Collector(len(mlp.hidden_linears), final.weight[None], bias,
                          pos_from_total=True, near_dead_threshold=near_dead_threshold,
                          dormant_tau=dormant_tau, margin=loss == "cross_entropy")
    meter = LossMeter(loss)
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
                yb = None if targets is None else targets[start:start + batch_size]
                out = mlp(xb)
                per_sample = sample_losses(loss, out, yb)
                meter.update(out, yb, per_sample)  # the sanity line, from this very forward pass
                (out.sum() if per_sample is None else per_sample.sum() / n).backward()  # = batch_share
                if progress is not None:
                    progress(min(start + batch_size, n))
        collector.set_weight_grads([lin.weight.grad.T[None] for lin in mlp.hidden_linears])
    finally:
        for p, (g, req) in zip(params, saved):
            p.grad = g
            p.requires_grad_(req)
    warnings = loss_warnings(loss, inferred, data.y, data.labels, outputs)
    return collector.result(0), meter.result(inferred, warnings)


@dataclass(frozen=True)
class AnalysisResult:
    """What ``probe analyze`` reports: the diagnostics plus what was analysed.

    Attributes:
        model: The model's description (path, format, widths, activation).
        data: The data's description (source, samples, features, targets).
        loss: The loss name (:data:`probe.core.losses.LOSSES`).
        diagnostics: Every hidden layer's diagnostics and the output sign routes.
        circuit: The sign circuit of one output (a ``probe.circuit.CircuitResult``), when traced.
        fit: The loss of the model as analysed (JSON ``loss.value``, ``loss.accuracy``,
            ``loss.inferred``): the sanity line. None only for results built by hand.
        warnings: Everything probe could not verify or suspects (conversions of the
            model, the loss choice), as sentences; JSON ``warnings``, always present.
    """

    model: dict
    data: dict
    loss: str
    diagnostics: NetworkDiagnostics
    circuit: object | None = field(default=None, compare=False)
    fit: LossSummary | None = None
    warnings: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        """The plain-English verdict on the negative region's gradient (see :mod:`probe.diagnostics.verdict`)."""
        return verdict(self.diagnostics)

    def to_dict(self) -> dict:
        loss = self.fit.to_dict() if self.fit is not None else \
            {"name": self.loss, "description": LOSSES[self.loss], "inferred": False, "value": None,
             "accuracy": None, "samples": self.data.get("samples")}
        doc = {"model": self.model, "data": self.data, "loss": loss, "warnings": list(self.warnings),
               **self.diagnostics.to_dict(), "verdict": self.verdict}
        if self.circuit is not None:
            doc["circuit"] = self.circuit.to_dict()
        return doc

    def __rich__(self):
        from probe.core.display import rich_view

        return rich_view(self)
