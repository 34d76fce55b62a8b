"""benchmarks.search_quality: sampling, the curve table, and pruner replays (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.pruners import MedianPruner, NopPruner

from benchmarks.search_quality import main, sample_configs
from benchmarks.search_quality_replay import (
    Candidate,
    read_table,
    replay,
    replay_order,
    replay_rows,
)
from search_spaces import load_space
from study.pruning import default_wait_epochs, peak_epoch

# 8 configurations x 12 epochs of the light space (WRN-10-1, Fashion-MNIST), the first eight of
# the CPU table in benchmarks/results/*-search-quality.json
TABLE = Path(__file__).resolve().parent / "data" / "search-quality-light-fashion-8x12.json"
ROW_KEYS = {"pruner", "default", "epochs_saved_frac", "regret", "best_survives_frac"}


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


def test_replay_order_follows_the_pruner() -> None:
    good = [[0.5 + 0.05 * e for e in range(6)] for _ in range(5)]
    bad = [[0.1] * 6]
    curves = good + bad
    # five finished trials, then the bad one is judged from epoch 3 and pruned there
    spent, finished = replay_order(
        curves, range(6), MedianPruner(n_startup_trials=5, n_warmup_steps=3), "t"
    )
    assert finished == [0, 1, 2, 3, 4] and spent == 5 * 6 + 3
    # the bad one first: nobody to compare with yet, so everything finishes
    spent, finished = replay_order(
        curves, [5, 0, 1, 2, 3, 4], MedianPruner(n_startup_trials=5, n_warmup_steps=3), "t"
    )
    assert sorted(finished) == list(range(6)) and spent == 36


def test_metrics_of_a_pruner_that_prunes_the_best() -> None:
    # the best config starts slowest: an eager median loses it, the regret is its margin
    slow_best = [0.1, 0.1, 0.1, 0.95]
    others = [[0.5, 0.6, 0.7, 0.8 - 0.01 * i] for i in range(5)]
    curves = [*others, slow_best]
    eager = Candidate("eager", False, lambda: MedianPruner(5, n_warmup_steps=1), 1)
    row = replay(curves, eager, [list(range(6))])
    assert row.best_survives_frac == 0.0
    assert row.regret == pytest.approx(15.0)  # 0.95 - 0.80, in points
    assert row.epochs_saved_frac == pytest.approx(3 / 24)
    none = replay(curves, Candidate("none", False, NopPruner, None), [list(range(6))])
    assert (none.epochs_saved_frac, none.regret, none.best_survives_frac) == (0.0, 0.0, 1.0)


def test_replay_of_the_committed_table() -> None:
    table = read_table(TABLE)
    assert len(table["trials"]) == 8 and table["epochs"] == 12
    rows = replay_rows(table, orders=12, startup_trials=3)
    by_name = {r.pruner: r for r in rows}
    none = by_name["none"]
    assert (none.epochs_saved_frac, none.regret, none.best_survives_frac) == (0.0, 0.0, 1.0)
    (default,) = [r for r in rows if r.default]
    assert default.first_epoch == default_wait_epochs(12, table["warmup_frac"]) + 1
    assert default.first_epoch > peak_epoch(12, table["warmup_frac"])
    assert any(name.startswith("old median") for name in by_name)
    assert any(name.startswith("old hyperband") for name in by_name)
    for row in rows:
        assert 0.0 <= row.epochs_saved_frac < 1.0
        assert 0.0 <= row.best_survives_frac <= 1.0
        assert 0.0 <= row.regret <= row.regret_max


def test_cli_replay_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--replay", str(TABLE), "--orders", "5", "--out", str(tmp_path)])
    assert code == 0
    (json_path,) = tmp_path.glob("*-search-quality.json")
    (md_path,) = tmp_path.glob("*-search-quality.md")
    result = json.loads(json_path.read_text())
    assert all(set(row) >= ROW_KEYS for row in result["rows"])
    assert sum(row["default"] for row in result["rows"]) == 1
    assert "| none |" in md_path.read_text()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("{not json", "not a JSON table"),
        ('{"kind": "other"}', "not a search-quality table"),
        ('{"kind": "search-quality-table", "epochs": 3, "trials": []}', "at least 2 trials"),
    ],
)
def test_cli_bad_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "table.json"
    if content is not None:
        path.write_text(content)
    assert main(["--replay", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


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
    assert read_table(table)["epochs"] == 2
