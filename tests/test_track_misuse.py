"""probe.track in loops that go wrong: what the tracker says, and what its history reader refuses."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from probe.core.errors import ModelLoadError, ProbeError
from probe.engines.track import track
from probe.experiment.history import read_histories, read_history


def _model(general: bool) -> nn.Sequential:
    torch.manual_seed(0)
    act = nn.GELU if general else nn.ReLU
    return nn.Sequential(nn.Linear(3, 8), act(), nn.Linear(8, 8), act(), nn.Linear(8, 1))


def _train_step(model: nn.Module, rows: int = 16) -> torch.Tensor:
    loss = model(torch.randn(rows, 3)).pow(2).mean()
    loss.backward()
    return loss


@pytest.mark.parametrize("general", [False, True])
def test_an_evaluation_with_autograd_inside_a_step_is_reported(general: bool, caplog) -> None:
    model = _model(general)
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(model) as tracker:
        _train_step(model)
        model(torch.randn(100, 3))  # evaluation without torch.no_grad: no backward reaches it
        record = tracker.step()
        _train_step(model, 8)  # a clean step: no second message (logged once), and nothing to say
        assert tracker.step()["samples"] == 8
    assert record["samples"] == 116  # counted, as documented, and said
    messages = [r.getMessage() for r in caplog.records if "had no backward pass" in r.getMessage()]
    assert len(messages) == 1 and "step 0: 100 of the 116 samples" in messages[0]


@pytest.mark.parametrize("general", [False, True])
def test_a_clean_loop_and_gradient_accumulation_say_nothing(general: bool, caplog) -> None:
    model = _model(general)
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(model) as tracker:
        for _ in range(2):
            _train_step(model)
            _train_step(model)  # two micro-batches, both backpropagated
            tracker.step()
    assert not caplog.records


def test_step_outside_the_with_block_is_refused() -> None:
    model = _model(False)
    tracker = track(model)
    _train_step(model)
    with pytest.raises(ProbeError, match="not open.*never opened"):
        tracker.step()
    with tracker:
        _train_step(model)
        tracker.step()
    with pytest.raises(ProbeError, match="not open.*closed"):
        tracker.step()
    assert len(tracker.history) == 1


def test_a_loop_that_never_calls_step_is_told(caplog) -> None:
    model = _model(False)
    with caplog.at_level(logging.WARNING, logger="probe.track"):
        with track(model):
            _train_step(model)
        assert "tracker.step() was never called" in caplog.text
        caplog.clear()
        with track(model):  # nothing ran through the model: nothing to say
            pass
        with pytest.raises(RuntimeError, match="the loop failed"), track(model):
            _train_step(model)
            raise RuntimeError("the loop failed")  # before step(): the error says what happened
    assert not caplog.records


def test_alerts_name_the_history_they_belong_to(tmp_path, caplog) -> None:
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():  # unit 0 dead on every sample: 50% window-dead at step 0
        model[0].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[0].bias.zero_()
    path = tmp_path / "gate.jsonl"
    with caplog.at_level(logging.WARNING, logger="probe.track"), track(model, path) as tracker:
        model(torch.ones(4, 1)).sum().backward()
        tracker.step()
    assert f"{path}: step 0: hidden layer 1 has 50.0% window-dead units" in caplog.text


def test_a_home_relative_path_is_expanded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    model = _model(False)
    with track(model, "~/runs/h.jsonl") as tracker:
        _train_step(model)
        tracker.step()
    assert (tmp_path / "runs" / "h.jsonl").is_file() and len(read_history(tmp_path / "runs" / "h.jsonl").records) == 1


@pytest.mark.parametrize("wrap, fix", [(torch.compile, r"model\._orig_mod"), (nn.DataParallel, r"model\.module")])
def test_a_wrapper_is_refused_with_the_module_to_pass(wrap, fix) -> None:
    with pytest.raises(ModelLoadError, match=fix):
        track(wrap(_model(False)))


def _history(tmp_path) -> list[str]:
    model = _model(False)
    path = tmp_path / "good.jsonl"
    with track(model, path) as tracker:
        for _ in range(3):
            _train_step(model)
            tracker.step()
    return path.read_text().splitlines()


def test_the_reader_refuses_files_without_a_header_or_with_a_corrupt_last_line(tmp_path) -> None:
    lines = _history(tmp_path)
    bad = tmp_path / "bad.jsonl"
    for text, found in [("", "an empty file"), ("\n".join(lines[1:]) + "\n", "records without the header"),
                        (lines[0][:30], "only a line cut short")]:
        bad.write_text(text)
        with pytest.raises(ProbeError, match=found):
            read_history(bad)
    bad.write_text("hello world, not json\n")  # ends in a newline: not cut short by a crash, corrupt
    with pytest.raises(ProbeError, match=r"corrupt at line 1.*\(column 1\)"):
        read_history(bad)
    bad.write_text("\n".join(lines) + "\n" + lines[1][:25] + "\n")
    with pytest.raises(ProbeError, match="corrupt at line 5"):
        read_history(bad)
    bad.write_text("\n".join(lines) + "\n" + lines[1][:25])  # no newline: a write cut short
    assert len(read_history(bad).records) == 3


def test_the_same_history_twice_is_refused(tmp_path) -> None:
    _history(tmp_path)
    with pytest.raises(ProbeError, match="given twice"):
        read_histories([tmp_path / "good.jsonl", tmp_path / ".." / tmp_path.name / "good.jsonl"])
