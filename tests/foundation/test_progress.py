"""The one progress helper: silent off a terminal or when disabled, drawn on one, shared by training and
evaluation."""

from __future__ import annotations

import nft_deploy.evaluation.progress as eval_progress
import nft_deploy.progress as progress
import nft_deploy.training.progress as train_progress


def test_training_and_evaluation_use_the_one_helper():
    assert train_progress.Progress is progress.Progress
    assert eval_progress.chip_progress is progress.chip_progress


def test_off_a_terminal_or_disabled_nothing_is_drawn(monkeypatch, capsys):
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: False)
    with progress.Progress() as bar:
        task = bar.task("x", 3)
        bar.advance(task)
        bar.done(task)
    assert task is None and bar._bar is None
    with progress.chip_progress(4, "chips") as advance:
        advance(2)
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    with progress.Progress(enabled=False) as bar:
        assert bar.task("x", 3) is None
    assert capsys.readouterr().err == ""


def test_on_a_terminal_a_bar_counts_the_work(monkeypatch):
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    with progress.Progress(unit="chips") as bar:
        task = bar.task("model", 5)
        bar.advance(task, 3)
        assert bar._bar.tasks[0].completed == 3 and bar._bar.tasks[0].total == 5
        bar.done(task)
        assert not bar._bar.tasks
