"""An attempt stopped by Ctrl-C/SIGTERM and queued to resume is counted as such in the report
and the study notes, never as a failure, and its curve is labelled interrupted."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from study import dashboard
from study.records import AblationSettings, mark_study
from study.records import TrialAttrs as A
from study.reporting import sections, summary
from study.reporting.data import StudyData


@pytest.fixture
def interrupted() -> optuna.Study:
    """Two complete runs and a third stopped after one epoch, its retry queued."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s-ablation", direction="maximize")
    mark_study(study, AblationSettings("s", epochs=2, seeds=[1]))
    for value in (0.5, 0.6):
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    stopped = study.ask()
    stopped.report(0.3, 1)
    stopped.set_user_attr(A.INTERRUPTED, True)
    study.tell(stopped, state=TrialState.FAIL)
    study.enqueue_trial({}, user_attrs={A.INTERRUPTED: True, A.RETRY_OF: stopped.number})
    return study


def test_the_report_and_the_note_count_it_queued(interrupted: optuna.Study) -> None:
    data = StudyData("s-ablation", interrupted, interrupted.get_trials(), None, "#000")
    assert summary.counts(data) == "2 complete, 1 interrupted (queued to resume)"
    note = dashboard.study_note(interrupted, "sqlite:///x.db")
    assert "Trials: 2 complete, 1 interrupted (queued to resume)." in note
    assert "fail" not in note


def test_once_resumed_it_is_no_longer_queued(interrupted: optuna.Study) -> None:
    retry = interrupted.ask()  # the queued retry
    interrupted.tell(retry, 0.7)
    data = StudyData("s-ablation", interrupted, interrupted.get_trials(), None, "#000")
    assert summary.counts(data) == "3 complete"


def test_its_curve_says_interrupted(interrupted: optuna.Study) -> None:
    data = StudyData("s-ablation", interrupted, interrupted.get_trials(), None, "#000")
    ((_, figure),) = sections.curves_part([data]).figures
    names = {trace.name for trace in figure.data if trace.name}
    assert names == {"trial 0 (complete)", "trial 1 (complete)", "trial 2 (interrupted)"}
