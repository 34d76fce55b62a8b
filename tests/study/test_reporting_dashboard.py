"""optuna-dashboard's view of a study, built directly with Optuna (no training, no server):
the metric's name, the learning-curve thumbnail's axis, and the notes' suggested commands."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
from optuna.trial import create_trial

from study import dashboard
from wrn.train import EpochStats

SPACE = {
    "name": "wrn28_10",
    "description": "WideResNet-28-10, dropout 0.3",
    "recipe": {"depth": 28, "width": 10, "dropout": 0.3},
    "search": {"epochs": 30, "params": {"dropout": {"type": "float", "low": 0.0, "high": 0.5}}},
}


def smoke_study(tmp_path: Path) -> tuple[optuna.Study, str]:
    """A 2-epoch search of the wrn28_10 space with the network fixed to a WRN-10-1."""
    url = f"sqlite:///{tmp_path / 'smoke.db'}"
    study = optuna.create_study(study_name="smoke", storage=url, direction="maximize")
    study.set_user_attr("kind", "search")
    settings = {
        "space": SPACE, "fixed": {"depth": 10, "width": 1}, "epochs": 2, "recipe_epochs": 200,
        "dataset": "synthetic", "val_size": 500, "seed": 0, "pruner": "median", "sampler": "tpe",
    }  # fmt: skip
    study.set_user_attr("settings", settings)
    study.add_trial(create_trial(value=0.05, user_attrs={"num_params": 79_000}))
    return study, url


def test_the_metric_is_named_not_objective_0(tmp_path: Path) -> None:
    study, url = smoke_study(tmp_path)
    assert study.metric_names is None  # what optuna-dashboard shows as "Objective 0"
    dashboard.write_study_note(study, url)
    assert optuna.load_study(study_name="smoke", storage=url).metric_names == ["val_acc"]
    rerun = optuna.create_study(study_name="smoke-rerun", storage=url)
    dashboard.name_metric(rerun, "rerun")
    assert optuna.load_study(study_name="smoke-rerun", storage=url).metric_names == ["test_acc"]


def _ys(svg: str, colour: str) -> list[float]:
    root = ET.fromstring(svg)
    (line,) = [e for e in root.iter() if e.tag.endswith("polyline") and e.get("stroke") == colour]
    return [float(p.split(",")[1]) for p in line.get("points", "").split()]


def test_the_learning_curve_axis_fits_the_data() -> None:
    # a CPU smoke run: accuracy between 1 % and 6 %
    history = [
        EpochStats(e, 4.6, 0.01 * e, 4.5, 0.012 * e, 0.1, 2.0, 900.0) for e in range(1, 6)
    ]
    svg = dashboard.learning_curve_svg(history, "smoke trial 0")
    ys = _ys(svg, "#d62728")  # the validation curve
    plot_height = 300 - 2 * 44  # the SVG's height less its padding, pixels
    assert max(ys) - min(ys) > plot_height / 2  # on a fixed 0-1 axis it spans 10 pixels
    labels = [e.text for e in ET.fromstring(svg).iter() if e.tag.endswith("text")]
    assert "1.00" not in labels and "0.00" in labels and "0.08" in labels
    assert dashboard.accuracy_range([0.2, 0.75]) == (0.2, 1.0)
    assert dashboard.accuracy_range([0.0, 1.0]) == (0.0, 1.0)


def test_a_smoke_study_note_names_its_network_and_its_own_epochs(tmp_path: Path) -> None:
    study, url = smoke_study(tmp_path)
    note = dashboard.write_study_note(study, url)
    title = note.splitlines()[0]
    assert title == "## smoke: search over `wrn28_10`, WRN-10-1" and "28-10" not in title
    assert "WRN-10-1 (fixed with `--set`) in place of the recipe's" in note
    rerun = next(line for line in note.splitlines() if "study.rerun" in line)
    assert rerun == (
        f"python -m study.rerun --study-name smoke --storage {url} --epochs 2 --top 5 --seeds 2"
    )
    assert "for 2 epochs, as this study" in note and "200" not in rerun


def test_the_ablation_note_resumes_with_the_flags_it_was_started_with(tmp_path: Path) -> None:
    _, url = smoke_study(tmp_path)
    ablation = optuna.create_study(study_name="smoke-ablation", storage=url)
    attrs = {"kind": "ablation", "source_study": "smoke", "base": "best", "base_trial": 0,
             "epochs": 2, "seeds": [0, 1], "path": [{"step": 0, "param": None, "mean": 0.1}]}
    for k, v in attrs.items():
        ablation.set_user_attr(k, v)
    note = dashboard.write_study_note(ablation, url)
    (command,) = [line for line in note.splitlines() if line.startswith("python -m study.ablate")]
    assert command == (
        f"python -m study.ablate --study-name smoke --storage {url} --base best --seeds 2 "
        "--epochs 2 --path"
    )
    assert re.search(r"seeds 0, 1", note)
