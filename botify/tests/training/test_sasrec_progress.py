"""`botify train sasrec` says what its progress bars count: the fit, the epoch, the loss.

A student waited 12 minutes on two unlabelled bars (one fit for the offline evaluation,
one on all logs) and could not tell them apart nor see whether the model still learned.
"""

from __future__ import annotations

import re

import pytest
from botify.analysis.sessions import sessionize
from botify.training.models import fit_model, get_model
from botify.training.models.base import TrainData
from botify.training.models.planted import planted_events


def test_bars_name_the_fit_the_epoch_and_show_the_loss(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    events = sessionize(planted_events(n_users=60, n_tracks=30, seed=3)).events
    data = TrainData.from_events(events, 30)
    mod = get_model("sasrec")
    params = mod.Params(epochs=2, dim=16, max_len=6, batch_size=64)
    quiet = fit_model("sasrec", data, params, k=5, seed=1, progress=False)
    assert capsys.readouterr().err == ""
    art = fit_model("sasrec", data, params, k=5, seed=1, progress="sasrec, final model on all logs")
    err = capsys.readouterr().err.replace("\r", "\n")
    for epoch in (1, 2):
        assert re.search(rf"sasrec, final model on all logs: epoch {epoch}/2: +100%.*loss=\d+\.\d{{3}}", err), err
    assert "sasrec, final model on all logs: next-track lists" in err
    assert art.lines() == quiet.lines()  # the bars change nothing in the model


def test_train_labels_its_two_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    from botify.training import train

    labels: list[object] = []

    def spy(name, data, params, *, k, seed, progress=False):  # type: ignore[no-untyped-def]
        labels.append(progress)
        return get_model("top_pop").fit(data, get_model("top_pop").Params(), k=k, seed=seed)

    monkeypatch.setattr(train, "fit_model", spy)
    monkeypatch.setattr("botify.training.models.fit_model", spy)
    events = sessionize(planted_events(n_users=60, n_tracks=30, seed=3)).events
    train.train_artifact("sasrec", events, n_tracks=30, k=5, progress=True)
    assert labels == ["sasrec, offline evaluation (train split)", "sasrec, final model on all logs"]
    labels.clear()
    train.train_artifact("sasrec", events, n_tracks=30, k=5, progress=False)
    assert labels == [False, False]
