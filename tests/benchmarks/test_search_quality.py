"""benchmarks.search_quality: sampling, the curve table, and asynchronous replays (no training)."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from optuna.pruners import MedianPruner

from benchmarks.async_replay import FullTraining, OptunaPruning
from benchmarks.curve_table import CurveTable, difficulty, read_curve_table
from benchmarks.search_quality import main, sample_configs
from benchmarks.search_quality_replay import (
    Candidate,
    ReplayPlan,
    candidates,
    make_plan,
    replay_rows,
)
from search_spaces import load_space
from study.pruning import first_judged_epoch
from study.records import TrialAttrs

# 8 configurations x 12 epochs of the light space (WRN-10-1, Fashion-MNIST), the first eight of
# the CPU table in benchmarks/results/*-search-quality.json
TABLE = Path(__file__).resolve().parent / "data" / "search-quality-light-fashion-8x12.json"
ROW_KEYS = {
    "pruner",
    "workers",
    "default",
    "epochs_to_within_half_point",
    "regret_at_25",
    "regret_at_50",
    "regret_at_100",
    "best_survives_frac",
}


def test_sampled_configs_are_in_the_space_and_repeatable() -> None:
    space = load_space("light")
    configs = sample_configs(space, {"depth": 10, "width": 1}, 20, seed=3)
    assert configs == sample_configs(space, {"depth": 10, "width": 1}, 20, seed=3)
    assert configs != sample_configs(space, {"depth": 10, "width": 1}, 20, seed=4)
    for params in configs:
        assert set(params) == set(space.params) - {"depth", "width"}  # fixed keys not searched
        for name, value in params.items():
            assert space.params[name].contains(value), (name, value)
    lrs = [p["lr"] for p in configs]
    assert len(set(lrs)) == len(lrs)


def test_a_pruner_that_loses_the_best_shows_regret() -> None:
    # the best config starts slowest: an eager median loses it, the regret is its margin
    slow_best = [0.1, 0.1, 0.1, 0.95]
    others = [[0.5, 0.6, 0.7, 0.8 - 0.01 * i] for i in range(5)]
    table = CurveTable(tuple(map(tuple, [*others, slow_best])), tuple([(1.0,) * 4] * 6), 4, 0.25)
    eager = Candidate(
        "eager", False, 1, "", lambda n, name: OptunaPruning(MedianPruner(5, 1), n, 4, name)
    )
    none = Candidate("none", False, None, "", lambda n, _: FullTraining(n, 4))
    plan = ReplayPlan((1,), [list(range(6))], [])
    rows, anytime = replay_rows(table, plan, [none, eager])
    by_name = {r["pruner"]: r for r in rows}
    assert by_name["eager"]["best_survives_frac"] == 0.0
    assert by_name["eager"]["regret_at_100"] == pytest.approx(15.0)  # 0.95 - 0.80, in points
    assert by_name["eager"]["epochs_to_within_half_point"] == math.inf
    assert by_name["none"]["regret_at_100"] == 0.0
    assert by_name["none"]["epochs_to_within_half_point"] == 24  # the best is the last
    assert by_name["none"]["regret_at_50"] == pytest.approx(15.0)  # 3 done, the best 0.80
    assert by_name["none"]["regret_at_25"] == pytest.approx(15.0)  # 1 done: the same
    assert anytime["none"][1][0] == pytest.approx(95.0)  # nothing finished: the whole best


def test_asynchronous_replay_of_the_committed_table() -> None:
    table = read_curve_table(TABLE)
    assert len(table.curves) == 8 and table.epochs == 12
    plan = make_plan(
        table, workers=(1, 3), trials=10, orders=6, bootstrap=3, per_replicate=2, seed=0
    )
    cands = candidates(table.epochs, table.warmup_frac, startup_trials=3, reduction=3)
    names = {c.name for c in cands}
    assert {"none", "median", "median from epoch 1", "hyperband", "asha"} <= names
    assert {"promote", "synchronous"} <= names
    rows, anytime = replay_rows(table, plan, cands)
    assert len(rows) == 2 * len(cands) and set(anytime) == names
    for workers in (1, 3):
        at = {r["pruner"]: r for r in rows if r["workers"] == workers}
        (default,) = [r for r in at.values() if r["default"]]
        assert default["first_epoch"] == first_judged_epoch(12, table.warmup_frac)
        none = at["none"]
        assert (none["regret_at_100"], none["best_survives_frac"]) == (0.0, 1.0)
        assert none["epochs_mean"] == 10 * 12 and none["savings_vs_none"] == 0.0
        assert at["promote"]["peak_checkpoints"] > 0
        for r in at.values():
            assert set(r) >= ROW_KEYS
            assert 0.0 <= r["best_survives_frac"] <= 1.0
            assert r["regret_at_25"] >= r["regret_at_50"] >= r["regret_at_100"] >= 0.0
            assert len(r["savings_ci"]) == len(r["regret_at_100_ci"]) == 2
            assert r["epochs_mean"] <= none["epochs_mean"]
    # more workers finish the same search sooner in simulated time
    hours = {(r["pruner"], r["workers"]): r["search_hours"] for r in rows}
    assert hours["none", 3] < hours["none", 1]


def make_storage(path: Path, curves: list[list[float]], warmup_frac: float = 0.25) -> None:
    """A study of this harness's records, trained with no pruning (no training here)."""
    study = optuna.create_study(
        storage=f"sqlite:///{path}", study_name="tiny", direction="maximize"
    )
    for curve in curves:
        trial = study.ask()
        trial.set_user_attr(TrialAttrs.CONFIG, {"epochs": len(curve), "warmup_frac": warmup_frac})
        trial.set_user_attr(TrialAttrs.EPOCH_SECONDS, [2.0] * len(curve))
        for epoch, acc in enumerate(curve, start=1):
            trial.report(acc, epoch)
        study.tell(trial, curve[-1])


def test_a_study_storage_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curves = [[0.1 * i, 0.1 * i + 0.05, 0.2 * i, 0.3 * i] for i in range(1, 7)]
    db = tmp_path / "table.db"
    make_storage(db, curves)
    table = read_curve_table(db)
    assert [list(c) for c in table.curves] == curves and table.seconds[0] == (2.0,) * 4
    assert difficulty(table, 2)["kendall_tau"] == 1.0  # ranked from the start
    out = tmp_path / "out"
    args = ["--replay", str(db), "--orders", "3", "--bootstrap", "2", "--trials", "6"]
    assert main([*args, "--workers", "1,2", "--out", str(out), "--label", "tiny"]) == 0
    (json_path,) = out.glob("*-tiny-search-quality.json")
    result = json.loads(json_path.read_text())
    assert result["rungs"] == [2, 4] and result["configs"] == 6
    assert {r["workers"] for r in result["rows"]} == {1, 2}
    assert json_path.with_suffix(".html").read_text().count("plotly") > 1
    assert "Command: `python -m benchmarks.search_quality --replay" in (
        json_path.with_suffix(".md").read_text()
    )


def test_cli_replay_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--replay", str(TABLE), "--orders", "3", "--bootstrap", "0", "--workers", "2"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("*-search-quality.json")
    (md_path,) = tmp_path.glob("*-search-quality.md")
    result = json.loads(json_path.read_text())
    assert all(set(row) >= ROW_KEYS for row in result["rows"])
    assert sum(row["default"] for row in result["rows"]) == 1
    assert {"checked", "met"} <= set(result["goal"]) or not result["goal"]["checked"]
    assert "| 2 | none |" in md_path.read_text()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("{not json", "not a JSON table"),
        ('{"kind": "other"}', "not a search-quality table"),
        ('{"kind": "search-quality-table", "epochs": 3, "trials": []}', "at least 2 trials"),
        (b"SQLite format 3\x00", "not a study storage"),
    ],
)
def test_cli_bad_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "table.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["--replay", str(path), "--out", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == ([path] if content is not None else [])
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "4,x"], "--workers"),
        (["--workers", "0"], "--workers"),
        (["--trials", "0"], "--trials"),
        (["--reduction", "1"], "reduction must be >= 2"),
    ],
)
def test_cli_bad_replay_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["--replay", str(TABLE), *flags, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_train_then_resume(tmp_path: Path, cifar_dir: Path) -> None:
    table = tmp_path / "table.json"
    args = [
        "--train-only",
        "--data-dir",
        str(cifar_dir),
        "--out-table",
        str(table),
        "--configs",
        "2",
        "--epochs",
        "2",
        "--val-size",
        "100",
        *("--set", "depth=10", "--set", "width=1", "--set", "batch_size=64"),
        *("--set", "augmentation=basic", "--set", "workers=0"),
    ]
    assert main(args) == 0
    data = json.loads(table.read_text())
    assert [len(t["curve"]) for t in data["trials"]] == [2, 2]
    assert data["train_images"] == 300 and data["val_images"] == 100
    # a finished table is not retrained; other settings are refused
    assert main(args) == 0
    assert json.loads(table.read_text())["trials"] == data["trials"]
    assert main([*args[:-2], "--set", "workers=0", "--set", "lr=0.2"]) == 2
    # and it replays
    assert read_curve_table(table).epochs == 2


def test_another_sqlite_file_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.commit()
    before = path.read_bytes()
    assert main(["--replay", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "not a study storage" in capsys.readouterr().err
    assert path.read_bytes() == before  # Optuna never opened it (it would add its tables)
