"""benchmarks.seed_spread: the table's best trained again with another seed, on their split."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from benchmarks.curve_table import read_curve_table
from benchmarks.seed_spread import STUDY, best_trials, main, planned, seed_spread_of
from study import run
from study.lifecycle import Lifecycle, run_planned, splits_loader
from study.records import StudyAttrs, StudyKind, TrialAttrs
from tests.study.conftest import copy_db, tiny_args


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-trial, 2-epoch search with no pruning: a table of this harness."""
    db = tmp_path_factory.mktemp("table") / "table.db"
    assert run.main(tiny_args(db, "--epochs", "2", "--trials", "3", "--sampler-seed", "0")) == 0
    return db


def trials_of(db: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def test_the_best_train_again_with_the_next_seed_and_resume(tmp_path: Path, table: Path) -> None:
    db = copy_db(table, tmp_path / "table.db")
    args = ["--table", str(db), "--top", "2", "--checkpoint-dir", str(tmp_path / "ck"), "--quiet"]
    assert main(args) == 0
    (search,) = {t.study_name for t in optuna.get_all_study_summaries(f"sqlite:///{db}")} - {STUDY}
    best = sorted(trials_of(db, search), key=lambda t: -t.value)[:2]
    runs = trials_of(db, STUDY)
    assert sorted(t.user_attrs[TrialAttrs.SOURCE_TRIAL] for t in runs) == sorted(
        t.number for t in best
    )
    for t in runs:
        source = next(b for b in best if b.number == t.user_attrs[TrialAttrs.SOURCE_TRIAL])
        mine, theirs = t.user_attrs[TrialAttrs.CONFIG], source.user_attrs[TrialAttrs.CONFIG]
        assert mine == {**theirs, "seed": 1} and t.user_attrs[TrialAttrs.SEED] == 1
    # the replay still sees the search's 3 configurations, and the spread of the 2 retrained
    table_read = read_curve_table(db)
    assert len(table_read.curves) == 3
    value_of = {b.number: b.value for b in best}
    pairs = [(t.value, value_of[t.user_attrs[TrialAttrs.SOURCE_TRIAL]]) for t in runs]
    sd = statistics.fmean(statistics.variance(p) for p in pairs) ** 0.5
    assert table_read.meta["seed_spread"]["sd_points"] == pytest.approx(100 * sd, abs=1e-3)
    assert table_read.meta["seed_spread"]["configs"] == 2
    assert main(args) == 0  # done: nothing trains again
    assert len(optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}").trials) == 2


def test_the_tables_own_seed_reproduces_its_curves(tmp_path: Path, table: Path) -> None:
    """The run scores on the table's validation split: with the table's seed it is the same
    run (CPU is deterministic), so each epoch's accuracy equals the recorded one."""
    db = copy_db(table, tmp_path / "table.db")
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    best = best_trials(storage, 1)
    study = optuna.create_study(storage=storage, study_name=STUDY, direction="maximize")
    life = Lifecycle(checkpoint_dir=tmp_path / "ck")
    run_planned(study, storage, planned(best, 0, None), {}, splits_loader(0), life)
    (again,) = study.get_trials(deepcopy=False)
    assert again.intermediate_values == best[0][1].intermediate_values


def test_refusals(tmp_path: Path, table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = copy_db(table, tmp_path / "table.db")
    before = db.read_bytes()
    for flags, message in (
        (["--seed", "0"], "--seed 0 is the table's own"),
        (["--top", "1"], "--top must be >= 2"),
    ):
        assert main(["--table", str(db), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert db.read_bytes() == before
    assert main(["--table", str(tmp_path / "none.db")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_pooled_spread_over_configurations_and_seeds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'spread.db'}"
    search = optuna.create_study(storage=url, study_name="s", direction="maximize")
    search.set_user_attr(StudyAttrs.KIND, StudyKind.SEARCH.value)
    extra = optuna.create_study(storage=url, study_name=STUDY, direction="maximize")
    extra.set_user_attr(StudyAttrs.KIND, StudyKind.OTHER.value)
    assert seed_spread_of(optuna.storages.RDBStorage(url)) is None  # no second seed yet
    # config 0: 0.80 (seed 0), 0.82 (1), 0.84 (2); config 1: 0.70, 0.71; config 2: one seed
    for number, values in enumerate(([0.80, 0.82, 0.84], [0.70, 0.71], [0.60])):
        trial = search.ask()
        trial.set_user_attr(TrialAttrs.CONFIG, {"seed": 0})
        search.tell(trial, values[0])
        for seed, value in enumerate(values[1:], start=1):
            run_trial = extra.ask()
            run_trial.set_user_attr(TrialAttrs.SOURCE_STUDY, "s")
            run_trial.set_user_attr(TrialAttrs.SOURCE_TRIAL, number)
            run_trial.set_user_attr(TrialAttrs.SEED, seed)
            extra.tell(run_trial, value)
    spread = seed_spread_of(optuna.storages.RDBStorage(url))
    squares = (0.02**2 + 0 + 0.02**2) + 2 * 0.005**2  # deviations from each config's own mean
    assert spread == {
        "sd_points": pytest.approx(round(100 * (squares / 3) ** 0.5, 3)),
        "configs": 2,
        "runs": 5,
        "largest_gap_points": pytest.approx(4.0),
        # the table's 0.80 against 0.83 on the other seeds, 0.70 against 0.71: they rose
        "drop_on_other_seeds_points": pytest.approx(-2.0),
        "kendall_tau_table_vs_other_seeds": 1.0,
    }
