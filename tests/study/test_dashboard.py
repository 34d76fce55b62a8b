"""optuna-dashboard against a storage the harness wrote: studies, trials, notes, artifacts."""

from __future__ import annotations

import csv
import io
import json
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard
import pytest

from study import ablate, dashboard, run
from study.records import AblationSettings
from tests.study.dashboard_server import dashboard_server
from tests.tiny import tiny_flags
from wrn.train import EpochStats

TINY = tiny_flags("augmentation", "mixup_prob", "cutmix_prob", "lr")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def written(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-trial search and its 1-seed ablation, with the study note and learning curves."""
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'wrn.db'}"
    argv = [
        *("--storage", url, "--data-dir", str(cifar_dir), "--val-size", "100"),
        *("--device", "cpu", "--epochs", "1", "--pruner", "none", "--trials", "2", *TINY),
    ]
    assert run.main(argv) == 0
    study = optuna.load_study(study_name="wrn28_10", storage=url)
    dashboard.write_study_note(study, url)
    common = ["--storage", url, "--data-dir", str(cifar_dir), "--device", "cpu"]
    assert ablate.main(["--study-name", "wrn28_10", *common, "--epochs", "1", "--seeds", "1"]) == 0
    return {"url": url, "artifacts": folder / "artifacts", "folder": folder}


def get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return response.read()


def get_json(base: str, path: str) -> Any:
    return json.loads(get(base, path))


@pytest.fixture(scope="module")
def server(written: dict[str, Any]) -> Iterator[str]:
    """The README's command: optuna-dashboard on loopback with the artifact folder."""
    log = written["folder"] / "dashboard.log"
    with dashboard_server(written["url"], written["artifacts"], log) as base:
        yield base


def study_ids(base: str) -> dict[str, int]:
    return {
        s["study_name"]: s["study_id"] for s in get_json(base, "/api/studies")["study_summaries"]
    }


def test_api_lists_the_studies(server: str) -> None:
    assert set(study_ids(server)) == {"wrn28_10", "wrn28_10-ablation"}
    assert get_json(server, "/api/meta")["artifact_is_available"] is True


def test_api_serves_trials_intermediate_values_and_the_note(
    server: str, written: dict[str, Any]
) -> None:
    detail = get_json(server, f"/api/studies/{study_ids(server)['wrn28_10']}")
    study = optuna.load_study(study_name="wrn28_10", storage=written["url"])
    assert [t["number"] for t in detail["trials"]] == [0, 1]
    for served, trial in zip(detail["trials"], study.get_trials(), strict=True):
        assert served["state"] == "Complete"
        assert served["intermediate_values"] == [{"step": 1, "value": trial.value}]
        assert {p["name"] for p in served["params"]} == set(trial.params)
    note = detail["note"]["body"]
    assert "## wrn28_10: search over `wrn28_10`" in note
    assert "| `dropout` | 0 to 0.5 | 0.3 |" in note  # searched range and the recipe's value
    assert "| `depth` | fixed to 10 by `--set` | 28 |" in note
    assert f"Trial {study.best_trial.number}: val acc **{study.best_value:.4f}**" in note
    assert f"python -m study.rerun --study-name wrn28_10 --storage {written['url']}" in note


def test_api_serves_learning_curve_artifacts(server: str, written: dict[str, Any]) -> None:
    study_id = study_ids(server)["wrn28_10-ablation"]
    detail = get_json(server, f"/api/studies/{study_id}")
    trials = detail["trials"]
    # the base and each factor not skipped as near off (the salted search decides which)
    ablation = optuna.load_study(study_name="wrn28_10-ablation", storage=written["url"])
    assert len(trials) == len(AblationSettings.of(ablation.user_attrs).planned_variants())
    for t in trials:
        files = {a["filename"]: a for a in t["artifacts"]}
        number = t["number"]
        assert set(files) == {
            f"learning_curve_trial{number}.csv",
            f"learning_curve_trial{number}.svg",
        }
        assert files[f"learning_curve_trial{number}.csv"]["mimetype"] == "text/csv"
        path = f"/artifacts/{study_id}/{t['trial_id']}"
        table = get(server, f"{path}/{files[f'learning_curve_trial{number}.csv']['artifact_id']}")
        rows = list(csv.DictReader(io.StringIO(table.decode())))
        assert len(rows) == 1 and float(rows[0]["eval_acc"]) == t["values"][0]
        svg = get(server, f"{path}/{files[f'learning_curve_trial{number}.svg']['artifact_id']}")
        assert ET.fromstring(svg).tag.endswith("svg")
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        # seed 1: the first the search (seed 0) never trained with
        assert attrs["seed"] == "1" and attrs["variant"].endswith(("base", "-off"))
    # the ablation's effect chart is on the study's page
    assert [g["id"] for g in detail["plotly_graph_objects"]] == ["effects"]
    assert "### Effects" in detail["note"]["body"]


def test_default_artifact_dir_sits_beside_the_storage() -> None:
    assert dashboard.default_artifact_dir("sqlite:///studies/wrn.db") == Path("studies/artifacts")
    assert dashboard.default_artifact_dir("sqlite:////tmp/x/s.db") == Path("/tmp/x/artifacts")
    assert dashboard.default_artifact_dir("postgresql://u:p@host/db") == Path("studies/artifacts")


def test_learning_curve_files() -> None:
    history = [
        EpochStats(1, 4.2, 0.05, 4.0, 0.08, 0.1, 2.0, 900.0),
        EpochStats(2, 3.6, 0.12, 3.5, 0.15, 0.05, 2.1, 950.0),
    ]
    rows = list(csv.DictReader(io.StringIO(dashboard.learning_curve_csv(history))))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["eval_acc"] == "0.15"
    svg = ET.fromstring(dashboard.learning_curve_svg(history, "s trial <3>"))
    texts = [e.text for e in svg.iter() if e.tag.endswith("text")]
    assert "s trial <3>" in texts and "val acc" in texts


def test_an_empty_history_uploads_nothing(tmp_path: Path) -> None:
    store = dashboard.artifact_store(tmp_path / "artifacts")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'a.db'}")
    assert dashboard.upload_learning_curve(study.ask(), store, []) == []
    assert not list((tmp_path / "artifacts").iterdir())


def test_note_callback_refreshes_the_best(written: dict[str, Any]) -> None:
    study = optuna.load_study(study_name="wrn28_10", storage=written["url"])
    refresh = dashboard.note_callback(written["url"])
    refresh(study, study.best_trial)
    assert f"val acc **{study.best_value:.4f}**" in optuna_dashboard.get_note(study)
