"""``python -m study.delete``: a study goes with its rerun and ablation studies and their files,
after a question, and nothing else does."""

from __future__ import annotations

import io
import os
import socket
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from study import delete, rerun
from study.cli import run_command
from study.lifecycle.checkpoints import checkpoint_of
from study.lifecycle.workers import process_start_time
from study.records import RerunSummary
from study.records import StudyAttrs as S
from study.records import TrialAttrs as A
from tests.study.conftest import TINY_STUDY, copy_db


def make_study(root: Path, name: str, kind: str | None = None, trials: int = 2) -> list[Path]:
    """A study of finished trials, each with a kept checkpoint and an artifact; its files."""
    url = f"sqlite:///{root / 'wrn.db'}"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    if kind is not None:
        study.set_user_attr(S.KIND, kind)
        study.set_user_attr(S.SOURCE_STUDY, "a")
    (root / "artifacts").mkdir(exist_ok=True)
    store = FileSystemArtifactStore(root / "artifacts")
    files = []
    for _ in range(trials):
        trial = study.ask()
        checkpoint, _ = checkpoint_of(root / "checkpoints", trial)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_bytes(b"w" * 2048)
        trial.set_user_attr(A.CHECKPOINT, str(checkpoint))
        curve = root / f"curve-{trial.number}.csv"
        curve.write_text("epoch,val_acc\n1,0.5\n")
        artifact = upload_artifact(
            artifact_store=store, file_path=str(curve), study_or_trial=trial
        )
        curve.unlink()
        study.tell(trial, 0.5)
        files += [checkpoint, root / "artifacts" / artifact]
    return files


def names(root: Path) -> list[str]:
    url = f"sqlite:///{root / 'wrn.db'}"
    return sorted(s.study_name for s in optuna.get_all_study_summaries(url))


def argv(root: Path, *extra: str) -> list[str]:
    return ["--storage", str(root / "wrn.db"), "--study-name", "a", *extra]


@pytest.fixture
def studies(tmp_path: Path) -> dict[str, list[Path]]:
    """``a`` with its rerun and ablation, ``b``, and ``a!`` whose checkpoints share ``a``'s
    folder (its name makes the same one)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {
        "a": make_study(tmp_path, "a"),
        "a-rerun": make_study(tmp_path, "a-rerun", "rerun", trials=1),
        "a-ablation": make_study(tmp_path, "a-ablation", "ablation", trials=3),
        "b": make_study(tmp_path, "b"),
        "a!": make_study(tmp_path, "a!"),
    }


def test_the_study_goes_with_its_derived_ones_and_their_files(
    studies: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (tmp_path / "checkpoints" / "a") == studies["a!"][0].parent  # one folder, two studies
    assert delete.main(argv(tmp_path, "--yes")) == 0
    assert names(tmp_path) == ["a!", "b"]
    gone = [f for name in ("a", "a-rerun", "a-ablation") for f in studies[name]]
    assert gone and not [f for f in gone if f.exists()]
    kept = studies["b"] + studies["a!"]
    assert all(f.is_file() for f in kept)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["a", "b"]
    out = capsys.readouterr().out
    assert "a (-): 2 trials, 2 checkpoint files, 2 artifacts" in out
    assert "a-ablation (ablation): 3 trials" in out and "a-rerun (rerun): 1 trial," in out
    assert "files: 12 (" in out and "deleted a, a-ablation, a-rerun and 12 files" in out


def test_it_asks_and_no_keeps_everything(
    studies: dict[str, list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    terminal = io.StringIO("n\n")
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", terminal)
    assert delete.main(argv(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "Delete 3 studies and 12 files? [y/N]" in out and "nothing deleted" in out
    assert len(names(tmp_path)) == 5
    assert all(f.is_file() for files in studies.values() for f in files)


def refused(args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_command("python -m study.delete", delete.main, args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_without_a_terminal_it_needs_yes(
    studies: dict[str, list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert "pass --yes" in refused(argv(tmp_path), capsys)
    assert len(names(tmp_path)) == 5


def running_trial(root: Path, name: str, pid: int) -> None:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{root / 'wrn.db'}")
    trial = study.ask()
    trial.set_user_attr(A.HOST, socket.gethostname())
    trial.set_user_attr(A.PID, pid)
    trial.set_user_attr(A.PID_START, process_start_time(pid))


def test_a_trial_with_a_live_worker_is_refused(
    studies: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    running_trial(tmp_path, "a-ablation", os.getpid())  # this process: alive
    err = refused(argv(tmp_path, "--yes"), capsys)
    assert "a-ablation trial 3 is training" in err and "nothing deleted" in err
    assert len(names(tmp_path)) == 5
    assert all(f.is_file() for files in studies.values() for f in files)


def test_a_trial_whose_worker_died_is_deleted(
    studies: dict[str, list[Path]], tmp_path: Path
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    running_trial(tmp_path, "a-rerun", dead.pid)
    assert delete.main(argv(tmp_path, "--yes")) == 0
    assert names(tmp_path) == ["a!", "b"]


def test_bad_input_is_one_line(
    studies: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = refused(["--storage", str(tmp_path / "wrn.db"), "--study-name", "zz"], capsys)
    assert "no study 'zz' in the storage (studies: a, a-rerun, a-ablation, b, a!)" in err
    assert "no such storage file" in refused(argv(tmp_path / "none"), capsys)
    assert not (tmp_path / "none").exists()
    (tmp_path / "file").write_text("")
    assert "--checkpoint-dir" in refused(
        argv(tmp_path, "--checkpoint-dir", str(tmp_path / "file")), capsys
    )
    assert len(names(tmp_path)) == 5


def test_a_checkpoint_named_outside_the_folder_stays(
    studies: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = elsewhere / "trial-0-x.pt"
    other.write_bytes(b"w")
    study = optuna.load_study(study_name="a", storage=f"sqlite:///{tmp_path / 'wrn.db'}")
    trial = study.ask()
    trial.set_user_attr(A.CHECKPOINT, str(other))
    study.tell(trial, 0.1)
    assert delete.main(argv(tmp_path, "--yes")) == 0
    assert other.is_file() and "kept: 1 checkpoint file its trials name outside" in (
        capsys.readouterr().out
    )


def test_help_has_examples() -> None:
    text = delete.build_parser().format_help()
    examples = text.split("examples:\n", 1)[1].split()
    assert examples[:3] == ["python", "-m", "study.delete"]


@pytest.mark.usefixtures("one_thread")
def test_a_real_rerun_goes_with_its_files(tiny_study: Path, tmp_path: Path) -> None:
    storage = copy_db(tiny_study, tmp_path / "wrn.db")
    url = f"sqlite:///{storage}"
    args = ["--study-name", TINY_STUDY, "--storage", url, "--device", "cpu", "--quiet"]
    assert rerun.main([*args, "--trial", "0", "--epochs", "1", "--seeds", "1"]) == 0
    search = optuna.load_study(study_name=TINY_STUDY, storage=url)
    assert RerunSummary.all(search.user_attrs)
    curves = 2 * len(search.trials)  # a CSV and an SVG each
    assert list((tmp_path / "checkpoints" / f"{TINY_STUDY}-rerun").iterdir())

    # the rerun study alone: the search stays, without the results of the reruns gone
    assert delete.main(["--storage", url, "--study-name", f"{TINY_STUDY}-rerun", "--yes"]) == 0
    search = optuna.load_study(study_name=TINY_STUDY, storage=url)
    assert not RerunSummary.all(search.user_attrs)
    assert not (tmp_path / "checkpoints" / f"{TINY_STUDY}-rerun").exists()
    assert not list((tmp_path / "artifacts").iterdir())  # the search's are in tiny_study's

    assert delete.main(["--storage", url, "--study-name", TINY_STUDY, "--yes"]) == 0
    assert not optuna.get_all_study_summaries(url)
    # the copied storage's artifacts stayed in tiny_study's folder, outside this one: kept
    assert len(list((tiny_study.parent / "artifacts").iterdir())) == curves
