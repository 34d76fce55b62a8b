"""``python -m study.delete``: remove a study, its rerun and ablation, and their files.

python -m study.delete --study-name light
python -m study.delete --storage studies/smoke.db --study-name smoke --yes

The study NAME goes with the studies made from it (NAME-rerun, NAME-ablation), through Optuna's
``delete_study``, and so do their files: the trials' checkpoints in --checkpoint-dir and their
artifacts (learning curves) in --artifact-dir; nothing outside those two folders is touched.
It lists what will go (each study with its trials, the files and their size) and asks first;
--yes answers for you (without a terminal it must). A study whose trial still trains (its
worker alive, or on another host) is refused: stop the worker first.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.cli import (
    Parser,
    add_artifact_flag,
    add_storage_flag,
    command_parser,
    run_command,
    study_name_type,
)
from study.errors import UsageError


@dataclass(frozen=True)
class DeleteJob:
    storage: str
    study_name: str
    checkpoint_dir: Path
    artifact_dir: Path
    yes: bool


@dataclass
class Doomed:
    """One study to delete and its files found in the job's folders."""

    name: str
    kind: str
    trials: int
    checkpoints: list[Path] = field(default_factory=list)
    artifacts: list[Path] = field(default_factory=list)
    elsewhere: int = 0  # checkpoints its trials name outside --checkpoint-dir: kept
    source: str | None = None  # a rerun's or ablation's search
    missing: int = 0  # artifacts it records that --artifact-dir does not hold

    @property
    def files(self) -> list[Path]:
        return [*self.checkpoints, *self.artifacts]


def build_parser() -> Parser:
    p = command_parser("study.delete", __doc__)
    add_storage_flag(p)
    p.add_argument(
        "--study-name",
        metavar="NAME",
        required=True,
        type=study_name_type,
        help="the study to delete, with its NAME-rerun and NAME-ablation",
    )
    p.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="where its runs kept checkpoints "
        "(default: checkpoints/ beside a SQLite storage, else studies/checkpoints)",
    )
    add_artifact_flag(p)
    p.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="delete without asking (needed without a terminal)",
    )
    return p


def _folder(flag: str, text: str | None, default: Path) -> Path:
    path = Path(text) if text else default
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: not a directory")
    return path


def parse_job(argv: Sequence[str] | None) -> DeleteJob:
    """The job, checked before any storage is opened."""
    from study.dashboard import default_artifact_dir
    from study.storage import default_checkpoint_dir

    args = build_parser().parse_args(argv)
    return DeleteJob(
        storage=args.storage,
        study_name=args.study_name,
        checkpoint_dir=_folder(
            "--checkpoint-dir", args.checkpoint_dir, default_checkpoint_dir(args.storage)
        ),
        artifact_dir=_folder(
            "--artifact-dir", args.artifact_dir, default_artifact_dir(args.storage)
        ),
        yes=args.yes,
    )


# -- what goes -----------------------------------------------------------------------------


def doomed_names(storage: Any, name: str) -> list[str]:
    """``name`` and the studies derived from it (NAME-rerun, NAME-ablation) that the storage
    holds and that record it as their source; NoSuchStudyError if ``name`` is not there."""
    from study.records import StudyKind, derived_name, require_study, source_study

    require_study(storage, name)
    derived = {derived_name(name, kind) for kind in (StudyKind.RERUN, StudyKind.ABLATION)}
    return [name] + [
        s.study_name
        for s in sorted(storage.get_all_studies(), key=lambda s: s.study_name)
        if s.study_name in derived and source_study(s.user_attrs) == name
    ]


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def checkpoint_files(folder: Path, study_name: str, trials: Sequence[Any]) -> list[Path]:
    """The files of the trials' checkpoints in ``folder``: each checkpoint, a copy set aside as
    corrupt and a half-written one; found by the trial's key, so another study whose name
    makes the same folder keeps its own."""
    from study.lifecycle.checkpoints import checkpoint_file, folder_name
    from study.records import TrialAttrs as A

    owned = {
        checkpoint_file(folder, study_name, int(t.user_attrs[A.FIRST_ATTEMPT]), key).name
        for t in trials
        if (key := t.user_attrs.get(A.CHECKPOINT_KEY)) and A.FIRST_ATTEMPT in t.user_attrs
    }
    slug = folder / folder_name(study_name)
    if not owned or not slug.is_dir():
        return []
    return sorted(
        p
        for p in slug.iterdir()
        if p.is_file() and any(p.name.lstrip(".").startswith(name) for name in owned)
    )


def _artifacts(storage: Any, study: Any, folder: Path) -> tuple[list[Path], int]:
    """The study's and its trials' artifact files in ``folder``, and how many it records that
    ``folder`` does not hold."""
    from optuna.artifacts import get_all_artifact_meta

    metas = get_all_artifact_meta(study)
    for trial in study.get_trials(deepcopy=False):
        metas += get_all_artifact_meta(trial, storage=storage)
    files = [folder / m.artifact_id for m in metas]
    found = [f for f in files if f.is_file() and _inside(f, folder)]
    return found, len(files) - len(found)


def survey(storage: Any, job: DeleteJob, name: str) -> tuple[Doomed, list[str]]:
    """What deleting study ``name`` removes, and the lines that say which of its trials still
    train (a worker alive on this host, or one on another host this one cannot check)."""
    import optuna

    from study.lifecycle.workers import worker_alive
    from study.records import TrialAttrs as A
    from study.records import source_study, study_kind

    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    doomed = Doomed(name, study_kind(study.user_attrs), len(trials))
    doomed.source = source_study(study.user_attrs)
    doomed.checkpoints = checkpoint_files(job.checkpoint_dir, name, trials)
    doomed.artifacts, doomed.missing = _artifacts(storage, study, job.artifact_dir)
    named = {Path(p) for t in trials if (p := t.user_attrs.get(A.CHECKPOINT))}
    doomed.elsewhere = sum(p.is_file() and not _inside(p, job.checkpoint_dir) for p in named)
    running = []
    for t in trials:
        if t.state != optuna.trial.TrialState.RUNNING or A.HOST not in t.user_attrs:
            continue  # a trial no worker of this harness recorded itself on
        alive = worker_alive(dict(t.user_attrs))
        where = f"host {t.user_attrs[A.HOST]} pid {t.user_attrs.get(A.PID)}"
        if alive:
            running.append(f"{name} trial {t.number} is training ({where})")
        elif alive is None:
            running.append(f"{name} trial {t.number} is running on {where}, not checkable here")
    return doomed, running


def size_text(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def listing(doomed: Sequence[Doomed], job: DeleteJob) -> list[str]:
    """What will go, one line a study, then the files and their size."""
    from study.reporting.part import plural

    lines = []
    for d in doomed:
        lines.append(
            f"  {d.name} ({d.kind}): {plural(d.trials, 'trial')}, "
            f"{plural(len(d.checkpoints), 'checkpoint file')}, "
            f"{plural(len(d.artifacts), 'artifact')}"
        )
    files = [f for d in doomed for f in d.files]
    size = sum(f.stat().st_size for f in files)
    lines.append(
        f"  files: {len(files)} ({size_text(size)}) in {job.checkpoint_dir} and {job.artifact_dir}"
    )
    elsewhere = sum(d.elsewhere for d in doomed)
    if elsewhere:
        lines.append(
            f"  kept: {plural(elsewhere, 'checkpoint file')} its trials name outside "
            f"{job.checkpoint_dir} (give their --checkpoint-dir to delete them)"
        )
    missing = sum(d.missing for d in doomed)
    if missing:
        lines.append(f"  ({plural(missing, 'recorded artifact')} not in {job.artifact_dir})")
    for source in kept_sources(doomed):
        lines.append(f"  kept: {source}, its recorded rerun results cleared")
    return lines


def kept_sources(doomed: Sequence[Doomed]) -> list[str]:
    """The searches that stay while their rerun study goes (``--study-name NAME-rerun``)."""
    from study.records import StudyKind

    names = {d.name for d in doomed}
    return [
        d.source
        for d in doomed
        if d.kind == StudyKind.RERUN and d.source is not None and d.source not in names
    ]


def clear_reruns(storage: Any, source: str) -> None:
    """Clear the rerun results a search records (its rerun study is gone), where it is there."""
    import optuna

    from study.records import RerunSummary

    try:
        study = optuna.load_study(study_name=source, storage=storage)
    except KeyError:
        return
    for summary in RerunSummary.all(study.user_attrs):
        study.set_user_attr(summary.key, None)  # read as no result (RerunSummary.all)


# -- asking and deleting -------------------------------------------------------------------


def confirmed(job: DeleteJob, question: str) -> bool:
    """--yes, or the user's "y" on a terminal; UsageError without a terminal to ask on."""
    if job.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask on: pass --yes to delete without asking")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def remove(storage: Any, doomed: Sequence[Doomed], job: DeleteJob) -> list[str]:
    """Delete the studies (derived ones first), then their files and the study's emptied
    checkpoint folder; the lines for files that could not be deleted."""
    import optuna

    from study.lifecycle.checkpoints import folder_name

    for d in reversed(doomed):
        optuna.delete_study(study_name=d.name, storage=storage)
    for source in kept_sources(doomed):
        clear_reruns(storage, source)
    problems = []
    for f in (f for d in doomed for f in d.files):
        try:
            f.unlink(missing_ok=True)
        except OSError as e:
            problems.append(f"{f}: not deleted ({e.strerror})")
    for d in doomed:
        folder = job.checkpoint_dir / folder_name(d.name)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return problems


def refuse_running(running: Sequence[str]) -> None:
    if running:
        more = f" (and {len(running) - 1} more)" if len(running) > 1 else ""
        raise UsageError(f"{running[0]}{more}: stop its worker first; nothing deleted")


def main(argv: Sequence[str] | None = None) -> int:
    job = parse_job(argv)
    import optuna

    from study.sqlite_file import checkpoint_wal
    from study.storage import open_storage, redact

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(job.storage, create=False, read_only=False)
    names = doomed_names(storage, job.study_name)
    surveyed = [survey(storage, job, name) for name in names]
    refuse_running([line for _, running in surveyed for line in running])
    doomed = [d for d, _ in surveyed]
    print(f"to delete from {redact(job.storage)}:")
    print("\n".join(listing(doomed, job)))
    files = sum(len(d.files) for d in doomed)
    question = (
        f"Delete {len(doomed)} {'study' if len(doomed) == 1 else 'studies'} and {files} files?"
    )
    if not confirmed(job, question):
        print("nothing deleted")
        return 1
    # a worker may have started meanwhile
    refuse_running([line for name in names for line in survey(storage, job, name)[1]])
    problems = remove(storage, doomed, job)
    checkpoint_wal(storage)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"deleted {', '.join(names)} and {files - len(problems)} files")
    return 1 if problems else 0


if __name__ == "__main__":
    run_command("python -m study.delete", main)
