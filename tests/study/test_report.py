"""``python -m study.report`` on storages the harness wrote: two studies, an ablation, a rerun."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import optuna
import pytest

from study import ablate, report, rerun, run
from study.cli import run_command
from study.lifecycle import report_epoch
from study.records import AblationSettings
from tests.tiny import tiny_flags
from wrn.train import EpochStats

TINY = tiny_flags("augmentation", "lr")
# the light space with first_dropout fixed off: its ablation has 4 variants
LIGHT = [*TINY, "--space", "light", "--set", "grad_accum=1", "--set", "first_dropout=0"]


pytestmark = pytest.mark.usefixtures("one_thread")


def url(storage: Path) -> str:
    return f"sqlite:///{storage}"


def search(storage: Path, data_dir: Path, trials: int, *extra: str) -> None:
    argv = [
        *("--storage", url(storage), "--data-dir", str(data_dir), "--val-size", "100"),
        *("--device", "cpu", "--epochs", "1", "--pruner", "none", "--trials", str(trials)),
        *extra,
    ]
    assert run.main(argv) == 0


def copy_db(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")


@pytest.fixture(scope="module")
def two_studies(cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wrn28_10 (3 trials) and light (2 trials), light ablated (2 seeds) and rerun (2 seeds)."""
    folder = tmp_path_factory.mktemp("report")
    storage = folder / "wrn.db"
    search(storage, cifar_dir, 3, *TINY)
    search(storage, cifar_dir, 2, *LIGHT)
    common = ["--storage", url(storage), "--data-dir", str(cifar_dir), "--device", "cpu"]
    assert ablate.main(["--study-name", "light", *common, "--epochs", "1", "--seeds", "2"]) == 0
    rerun_args = ["--study-name", "light", *common, "--epochs", "1", "--seeds", "2"]
    assert rerun.main([*rerun_args, "--checkpoint-dir", str(folder / "ckpt")]) == 0
    return storage


def figure_ids(page: str) -> set[str]:
    # plotly's to_html gives each figure a div with the id we chose and class plotly-graph-div
    return set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page))


def test_report_holds_every_part(
    two_studies: Path, cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out" / "report.html"
    assert report.main(["--storage", url(two_studies), "--out", str(out)]) == 0
    page = out.read_text()
    printed = capsys.readouterr().out
    assert figure_ids(page) == {
        "fig-cost",
        "fig-pareto",
        "fig-history",
        "fig-curves-light",
        "fig-curves-wrn28_10",
        "fig-parallel-light",
        "fig-parallel-wrn28_10",
        "fig-reruns",
        "fig-ablation-light",
    }
    # self-contained: plotly.js inlined exactly once, nothing fetched from a CDN
    assert page.count("plotly.js v") == 1
    assert not re.search(r"<script[^>]*\ssrc=", page) and not re.search(r"<link[^>]*href=", page)
    summary = page.split('<section id="summary">')[1].split("</section>")[0]
    for words in (
        "light reaches",
        "wrn28_10 reaches",
        "CPU-seconds vs",  # the tiny studies run on the CPU: their time is not GPU time
        "Ablation of light from the best trial",
        "test acc",
        "over 2 seeds",
    ):
        assert words in summary, words
    ablation = summary.split("Ablation of light")[1].split("</li>")[0]
    # 1-epoch tiny runs may score alike on both seeds: then no interval, never a zero-width one
    assert "95% CI" in ablation or "not estimable" in ablation, ablation
    assert "± 0.00 points" not in ablation, ablation
    # what is missing is said, not skipped silently
    assert "not enough trials for parameter importances (needs ≥10 complete, has 3)" in page
    # every suggested command names the storage and the data folder it reads (not the defaults)
    ablate_wrn = (
        f"python -m study.ablate --study-name wrn28_10 --storage {url(two_studies)} "
        f"--data-dir {cifar_dir.resolve()}"
    )
    assert f"wrn28_10: no ablation yet ({ablate_wrn})" in page
    assert "wrn28_10: no rerun yet" in page
    # the ablation table: the base first, each variant's difference with its interval
    table = page.split('data-table="ablation-light"')[1].split("</table>")[0]
    # the base and each factor not skipped as near off (the salted search decides which)
    ablation_study = optuna.load_study(study_name="light-ablation", storage=url(two_studies))
    planned = AblationSettings.of(ablation_study.user_attrs).planned_variants()
    assert table.count("<tr>") == 1 + len(planned)
    assert "95% CI" in table or "not estimable" in table
    assert "light reaches" in printed and f"wrote {out}: 9 figures" in printed


def test_importances_appear_with_enough_trials(
    two_studies: Path,
) -> None:
    from study.reporting.data import collect
    from study.reporting.results import importance_part

    studies = collect(optuna.storages.RDBStorage(url(two_studies)), None, url(two_studies))
    # three trials are too few to mean anything, but enough to exercise both evaluators
    part = importance_part(studies, min_trials=3)
    assert [figure_id for figure_id, _ in part.figures] == ["fig-importance-wrn28_10"]
    names = {trace.name for trace in part.figures[0][1].data}
    # fANOVA's forest may find no variance in three tiny trials: then the part says so
    assert "PED-ANOVA (top 50%)" in names
    assert "fANOVA" in names or any("fANOVA failed" in m for m in part.missing)
    light = "light: not enough trials for parameter importances (needs ≥3 complete, has 2)"
    assert light in part.missing


def test_studies_can_be_chosen(two_studies: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    argv = ["--storage", url(two_studies), "--studies", "light", "--out", str(out)]
    assert report.main(argv) == 0
    page = out.read_text()
    assert "fig-curves-light" in figure_ids(page) and "wrn28_10" not in page


def test_one_trial_and_a_running_study_still_render(
    cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = tmp_path / "wrn.db"
    search(storage, cifar_dir, 1, *TINY)
    out = tmp_path / "report.html"
    assert report.main(["--storage", url(storage), "--out", str(out)]) == 0
    page = out.read_text()
    assert {"fig-cost", "fig-pareto", "fig-history", "fig-curves-wrn28_10"} <= figure_ids(page)
    assert "parallel coordinates need ≥2 complete trials, has 1" in page
    assert "(needs ≥10 complete, has 1)" in page

    # a trial in progress, as another worker leaves it while the study runs
    study = optuna.load_study(study_name="wrn28_10", storage=url(storage))
    trial = study.ask()
    report_epoch(trial, EpochStats(1, 4.5, 0.02, 4.5, 0.02, 0.1, 0.5, 600.0))
    trial.set_user_attr("epoch_seconds", [0.5])
    assert report.main(["--storage", url(storage), "--out", str(out)]) == 0
    page = out.read_text()
    assert "wrn28_10 is still running (1 trial(s) in progress)" in page
    assert "1 complete, 1 running" in page


def test_a_study_with_no_finished_trial_renders(tmp_path: Path) -> None:
    storage = tmp_path / "wrn.db"
    study = optuna.create_study(study_name="fresh", storage=url(storage))
    study.set_user_attr("kind", "search")
    study.ask()  # started, nothing reported yet
    out = tmp_path / "report.html"
    assert report.main(["--storage", url(storage), "--out", str(out)]) == 0
    page = out.read_text()
    assert "fresh has no complete trial yet" in page
    assert "fresh: no trial has reported an epoch yet" in page


def fails(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_command("python -m study.report", report.main, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err


def test_an_unwritable_out_is_refused_before_the_storage_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    missing = url(tmp_path / "nowhere" / "wrn.db")  # reading it: "no such storage"
    fails(capsys, ["--storage", missing, "--out", str(blocker / "r.html")], "is not a directory")
    fails(capsys, ["--storage", missing, "--out", str(blocker / "d" / "r.html")], "--out")
    assert not re.search("storage", capsys.readouterr().err)


def test_bad_input_is_one_line(
    two_studies: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = url(two_studies)
    out = str(tmp_path / "r.html")
    fails(capsys, ["--storage", storage, "--studies", "nope", "--out", out], "no study 'nope'")
    fails(
        capsys,
        ["--storage", storage, "--studies", "light-ablation", "--out", out],
        "not a search study",
    )
    fails(capsys, ["--storage", url(tmp_path / "none.db"), "--out", out], "no such storage")
    fails(capsys, ["--storage", storage, "--out", str(tmp_path)], "is a directory")
    assert not (tmp_path / "none.db").exists() and not Path(out).exists()
