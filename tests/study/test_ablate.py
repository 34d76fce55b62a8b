"""``python -m study.ablate`` on generated ``cifar-100-python`` files with a WRN-10-1."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState
from scipy import stats as scipy_stats

import wrn.train as training
from study import ablate, run
from study.ablation import effects as ablation_effects
from study.ablation import plan
from study.cli import run_command
from study.records import AblationSettings
from tests.study.conftest import copy_db
from tests.tiny import tiny_flags

# mixing and the strong augmentation fixed off: the factors left are dropout, label smoothing
# and weight decay, so an ablation is 4 variants
TINY_SET = tiny_flags("augmentation", "mixup_prob", "cutmix_prob", "lr")
VARIANTS = {"base", "dropout-off", "label_smoothing-off", "weight_decay-off"}
EXECUTION = (*plan.EXECUTION_KEYS, "seed", "epochs")


pytestmark = pytest.mark.usefixtures("one_thread")


def url(storage: Path) -> str:
    return f"sqlite:///{storage}"


def ablate_args(storage: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "--study-name",
        "wrn28_10",
        "--storage",
        url(storage),
        "--data-dir",
        str(data_dir),
        "--device",
        "cpu",
        "--epochs",
        "1",
        *extra,
    ]


SEARCH_FLAGS = [
    *("--val-size", "100", "--device", "cpu", "--epochs", "1", "--pruner", "none"),
    *TINY_SET,
]


@pytest.fixture(scope="module")
def searched(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("ablate") / "wrn.db"
    argv = [*SEARCH_FLAGS, "--storage", url(storage), "--data-dir", str(cifar_dir)]
    assert run.main([*argv, "--trials", "2"]) == 0
    return storage


class CountingTrain:
    """Wraps ``train``: counts calls and raises KeyboardInterrupt on call ``interrupt_at``."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.interrupt_at = interrupt_at
        self.real = training.train

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


@pytest.fixture(scope="module")
def ablated(searched: Path, cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An ablation (2 seeds) interrupted at its third run, left with a stale RUNNING trial as a
    killed process would, then resumed, then run once more."""
    storage = tmp_path_factory.mktemp("ablated") / "wrn.db"
    copy_db(searched, storage)
    argv = ablate_args(storage, cifar_dir, "--seeds", "2")
    calls = {}
    with pytest.MonkeyPatch.context() as mp:
        first = CountingTrain(interrupt_at=3)
        mp.setattr(training, "train", first)
        with pytest.raises(KeyboardInterrupt):
            ablate.main(argv)
        calls["interrupted"] = first.calls
        study = optuna.load_study(study_name="wrn28_10-ablation", storage=url(storage))
        calls["states_after_interrupt"] = [t.state for t in study.get_trials()]
        # a process killed outright leaves its trial RUNNING, with its host and (dead) pid
        stale = study.ask()
        stale.set_user_attr("variant", "weight_decay-off")
        stale.set_user_attr("seed", 2)
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale.set_user_attr("host", socket.gethostname())
        stale.set_user_attr("pid", dead.pid)
        calls["stale_number"] = stale.number

        resumed = CountingTrain()
        mp.setattr(training, "train", resumed)
        assert ablate.main(argv) == 0
        calls["resumed"] = resumed.calls

        again = CountingTrain()
        mp.setattr(training, "train", again)
        assert ablate.main(argv) == 0
        calls["again"] = again.calls
    return {"storage": storage, "calls": calls}


def test_variants_and_seeds_are_recorded(ablated: dict, searched: Path) -> None:
    storage = ablated["storage"]
    source = optuna.load_study(study_name="wrn28_10", storage=url(storage))
    best = source.best_trial
    study = optuna.load_study(study_name="wrn28_10-ablation", storage=url(storage))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    pairs = sorted((t.user_attrs["variant"], t.user_attrs["seed"]) for t in complete)
    # every factor but those the (salted) search's best left (near) off, skipped with a reason
    skipped = AblationSettings.of(study.user_attrs).skipped
    variants = {v for v in VARIANTS if v.removesuffix("-off") not in skipped}
    assert pairs == sorted((v, s) for v in variants for s in (1, 2))
    # no run is a replay of a search trial: the search trained every trial with seed 0
    search_seeds = {t.user_attrs["config"]["seed"] for t in source.get_trials()}
    assert search_seeds == {0} and not search_seeds & {s for _, s in pairs}

    best_config = best.user_attrs["config"]
    for t in complete:
        config = t.user_attrs["config"]
        # scored on the study's validation split, never the test set
        assert config["eval_split"] == "val" and config["val_size"] == 100
        assert config["epochs"] == 1 and config["seed"] == t.user_attrs["seed"]
        assert sorted(t.intermediate_values) == [1] and t.value == t.intermediate_values[1]
        assert len(t.user_attrs["epoch_seconds"]) == 1 and t.user_attrs["num_params"] == 83_700
        changed = t.user_attrs["changed"]
        if t.user_attrs["variant"] == "base":
            assert changed == {}
        else:
            (key,) = changed
            assert t.user_attrs["variant"] == f"{key}-off"
            assert changed[key] == [best_config[key], config[key]]
        # everything but the switched-off factor is the best trial's config
        differs = {k for k in config if k not in EXECUTION and config[k] != best_config[k]}
        assert differs == set(changed)
        # the dashboard shows the ablated keys as the trial's parameters
        assert set(t.params) == {"dropout", "label_smoothing", "weight_decay"}
        assert t.params == {k: config[k] for k in t.params}
        artifacts = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert sorted(a.filename for a in artifacts) == [
            f"learning_curve_trial{t.number}.csv",
            f"learning_curve_trial{t.number}.svg",
        ]

    attrs = study.user_attrs
    assert attrs["kind"] == "ablation" and attrs["source_study"] == "wrn28_10"
    assert attrs["base"] == "best" and attrs["base_trial"] == best.number
    assert attrs["epochs"] == 1 and attrs["seeds"] == [1, 2] and attrs["search_seeds"] == [0]
    assert set(attrs["skipped"]) == {"mixup_prob", "cutmix_prob", "augmentation"}
    assert {k: v for k, v in attrs["base_config"].items() if k not in EXECUTION} == {
        k: v for k, v in best_config.items() if k not in EXECUTION
    }
    note = optuna_dashboard.get_note(study)  # the dashboard's markdown note for the study
    assert "ablation of `wrn28_10`" in note and "| dropout 0" in note
    assert "none of them the search's (0)" in note and "Holm" in note


def test_resume_runs_only_what_is_missing(ablated: dict) -> None:
    calls = ablated["calls"]
    assert calls["interrupted"] == 3
    # the interrupted run is queued to resume, as a search's is
    assert calls["states_after_interrupt"] == [TrialState.COMPLETE] * 2 + [
        TrialState.FAIL,
        TrialState.WAITING,
    ]
    # 8 runs in all, 2 finished before the interruption: the resume trains the other 6
    assert calls["resumed"] == 6 and calls["again"] == 0
    study = optuna.load_study(study_name="wrn28_10-ablation", storage=url(ablated["storage"]))
    trials = study.get_trials()
    assert trials[calls["stale_number"]].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 8
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_effects_have_paired_intervals(ablated: dict, capsys: pytest.CaptureFixture) -> None:
    study = optuna.load_study(study_name="wrn28_10-ablation", storage=url(ablated["storage"]))
    effects = ablation_effects.compute_effects(study.get_trials())
    assert effects[0].variant == "base" and effects[0].diff is None
    diffs = [e.diff for e in effects[1:]]
    assert diffs == sorted(diffs) and len(diffs) == 3
    base = {
        t.user_attrs["seed"]: t.value
        for t in study.get_trials()
        if t.user_attrs.get("variant") == "base"
    }
    for e in effects[1:]:
        assert e.n == 2 and e.tests == 3
        if e.interval is not None:  # else the two seeds' differences were equal: no spread
            assert e.interval[0] <= e.diff <= e.interval[1]
            pairs = [
                (t.value, base[t.user_attrs["seed"]])
                for t in study.get_trials()
                if t.user_attrs.get("variant") == e.variant and t.value is not None
            ]
            reference = scipy_stats.ttest_rel(*zip(*pairs, strict=True))
            assert e.p == pytest.approx(reference.pvalue)
    table = ablation_effects.effects_table(effects)
    assert "dropout" in table and ("95% CI" in table or "not estimable" in table)


def test_path_ends_at_the_best_configuration(
    ablated: dict, cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = tmp_path / "wrn.db"
    copy_db(ablated["storage"], storage)
    counting = CountingTrain()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train", counting)
        assert ablate.main(ablate_args(storage, cifar_dir, "--seeds", "1", "--path")) == 0
    # the variants' seed 0 is done; the path trains its start and 3 + 2 + 1 candidates
    assert counting.calls == 7
    study = optuna.load_study(study_name="wrn28_10-ablation", storage=url(storage))
    path = study.user_attrs["path"]
    assert [s["step"] for s in path] == [0, 1, 2, 3]
    assert path[0]["variant"] == "path-0-recipe"
    assert {s["param"] for s in path[1:]} == {"dropout", "label_smoothing", "weight_decay"}
    for step in path[1:]:
        # the greedy choice: the candidate with the largest mean
        assert step["mean"] == max(step["candidates"].values())
        assert step["variant"] == f"path-{step['step']}-{step['param']}"

    trials = {t.user_attrs["variant"]: t for t in study.get_trials(states=(TrialState.COMPLETE,))}
    best = optuna.load_study(study_name="wrn28_10", storage=url(storage)).best_trial
    last = trials[path[-1]["variant"]].user_attrs["config"]
    start = trials["path-0-recipe"].user_attrs["config"]

    def comparable(config: dict) -> dict:
        return {k: v for k, v in config.items() if k not in EXECUTION}

    assert comparable(last) == comparable(best.user_attrs["config"])
    assert start["dropout"] == 0.3 and start["weight_decay"] == 5e-4  # the recipe's values
    assert "path: recipe" in capsys.readouterr().out


def test_base_recipe_conflicts_with_a_best_ablation(
    ablated: dict, cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = tmp_path / "wrn.db"
    copy_db(ablated["storage"], storage)
    before = snapshot(storage)
    fails(capsys, ablate_args(storage, cifar_dir, "--base", "recipe"), "--base best")
    assert snapshot(storage) == before


def snapshot(storage: Path) -> dict[str, int]:
    """Every study and its number of trials: what a refused command must leave as it was."""
    summaries = optuna.get_all_study_summaries(url(storage))
    return {s.study_name: s.n_trials for s in summaries}


def fails(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_command("python -m study.ablate", ablate.main, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0"], "--seeds: must be >= 1"),
        (["--epochs", "0"], "--epochs: must be >= 1"),
        (["--base", "worst"], "invalid choice"),
        (["--study-name", "nope"], "no study 'nope'"),
        (["--device", "tpu"], "invalid choice"),
        (["--data-dir", "/nonexistent/wrn-data"], "CIFAR-100"),
        (["--artifact-dir", "/dev/null/artifacts"], "cannot hold artifacts"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(
    searched: Path,
    cifar_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    storage = tmp_path / "wrn.db"
    copy_db(searched, storage)
    before = snapshot(storage)
    fails(capsys, ablate_args(storage, cifar_dir, *extra), message)
    assert snapshot(storage) == before


def test_a_study_without_complete_trials_needs_base_recipe(
    searched: Path, cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = tmp_path / "wrn.db"
    copy_db(searched, storage)
    source = optuna.load_study(study_name="wrn28_10", storage=url(storage))
    empty = optuna.create_study(study_name="empty", storage=url(storage))
    for key, value in source.user_attrs.items():
        empty.set_user_attr(key, value)
    argv = ablate_args(storage, cifar_dir)
    argv[1] = "empty"
    before = snapshot(storage)
    fails(capsys, argv, "--base recipe")
    argv[1] = "wrn28_10-nothing"
    fails(capsys, argv, "no study 'wrn28_10-nothing'")
    assert snapshot(storage) == before


def test_missing_storage_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fails(capsys, ["--study-name", "x", "--storage", url(tmp_path / "none.db")], "no such storage")
    assert not (tmp_path / "none.db").exists()


def test_set_seed_keeps_the_search_split(
    cifar_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wrn.data

    storage = tmp_path / "wrn.db"
    search = [*SEARCH_FLAGS, "--storage", url(storage), "--data-dir", str(cifar_dir)]
    assert run.main([*search, "--trials", "1", "--set", "seed=7"]) == 0
    split_seeds = []
    real = wrn.data.load_splits

    def spy(data: Any, num_classes: int, seed: int) -> Any:
        split_seeds.append(seed)
        return real(data, num_classes, seed)

    monkeypatch.setattr(wrn.data, "load_splits", spy)
    assert ablate.main(ablate_args(storage, cifar_dir, "--seeds", "1")) == 0
    # the search split (and trained) with 7: so does the ablation, training with 8
    assert split_seeds and set(split_seeds) == {7}
    study = optuna.load_study(study_name="wrn28_10-ablation", storage=url(storage))
    assert {t.user_attrs["seed"] for t in study.get_trials()} == {8}
