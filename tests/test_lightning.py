"""ProbeCallback: probe.track inside Lightning's Trainer.fit (skipped when lightning is not installed)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

lightning = pytest.importorskip("lightning")

from probe.experiment.history import read_history  # noqa: E402
from probe.integrations.lightning import ProbeCallback  # noqa: E402


class Regressor(lightning.LightningModule):
    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
        self.fail_at = fail_at

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if self.fail_at is not None and self.global_step == self.fail_at:
            raise RuntimeError("failed mid-fit")
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _loader() -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(96, 4, generator=gen)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, X.sum(1, keepdim=True)), batch_size=16)


def _fit(model, callback, epochs: int = 2, accumulate: int = 1) -> None:
    trainer = lightning.Trainer(max_epochs=epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2,
                                accumulate_grad_batches=accumulate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, _loader(), _loader())


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("module", [None, "net"])
def test_callback_records_every_nth_training_batch(tmp_path, module) -> None:
    model = Regressor()
    callback = ProbeCallback(tmp_path / "fit.jsonl", module=module, every=4)
    _fit(model, callback)
    history = read_history(tmp_path / "fit.jsonl")
    assert [r["step"] for r in history.records] == [0, 4, 8]  # 2 epochs x 6 batches
    assert all(r["samples"] == 16 for r in history.records)  # validation passes are not recorded
    assert all("loss" in r and r["layers"][1]["grad_ratio"] == 0.0 for r in history.records)
    assert history.header["model"] == "4-16-16-1 relu"
    assert _hooks(model) == 0


def test_callback_unhooks_when_fit_fails(tmp_path) -> None:
    model = Regressor(fail_at=3)
    callback = ProbeCallback(every=1)
    with pytest.raises(RuntimeError, match="failed mid-fit"):
        _fit(model, callback)
    assert [r["step"] for r in callback.history] == [0, 1, 2]
    assert _hooks(model) == 0


def test_with_accumulated_gradients_a_step_is_an_optimizer_step(tmp_path) -> None:
    torch.manual_seed(0)
    model = Regressor()
    start = [p.detach().clone() for p in model.net.parameters()]
    callback = ProbeCallback(tmp_path / "fit.jsonl", module="net", every=1)
    _fit(model, callback, epochs=1, accumulate=4)  # 6 batches: optimizer steps after batches 4 and 6
    records = read_history(tmp_path / "fit.jsonl").records
    assert [(r["step"], r["samples"]) for r in records] == [(0, 64), (1, 32)]
    # step 0's loss: the mean of its 4 batches' losses, all under the initial weights (no
    # optimizer step in between), recomputed on a plain copy of the network
    plain = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        for p, q in zip(plain.parameters(), start):
            p.copy_(q)
        losses = [nn.functional.mse_loss(plain(x), y) for x, y in list(_loader())[:4]]
    assert records[0]["loss"] == pytest.approx(float(torch.stack(losses).mean()), rel=1e-6)
