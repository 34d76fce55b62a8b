"""``python -m study.export``: a study's trials as one table (CSV, or Parquet with pyarrow).

python -m study.export --study-name light --out light.csv
python -m study.export --storage studies/smoke.db --study-name smoke-rerun --out rerun.parquet

One row per trial: number, state, value, params, cost, why it ended, and its per-epoch values
(columns ``val_acc_epoch_1`` ...; ``test_acc_...`` for a rerun study). Built on Optuna's
``trials_dataframe()``, with what this harness records beside it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.cli import Parser, add_storage_flag, command_parser, run_command, study_name_type
from study.errors import UsageError

FORMATS = {".csv": "CSV", ".parquet": "Parquet"}  # by the --out file's suffix


@dataclass(frozen=True)
class ExportJob:
    storage: str
    study_name: str
    out: Path


def build_parser() -> Parser:
    p = command_parser("study.export", __doc__)
    add_storage_flag(p)
    p.add_argument("--study-name", required=True, type=study_name_type, help="the study")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help=f"the file to write; its suffix picks the format ({', '.join(FORMATS)})",
    )
    return p


def parse_job(argv: Sequence[str] | None) -> ExportJob:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if out.suffix not in FORMATS:
        raise UsageError(f"--out {out}: the suffix must be one of {', '.join(FORMATS)}")
    if out.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise UsageError(f"--out {out}: Parquet needs pyarrow (pip install pyarrow), or use .csv")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: no folder {out.parent}")
    return ExportJob(args.storage, args.study_name, out)


def _extra(trial: Any, metric: str, epochs: int) -> dict[str, Any]:
    """What the harness records on a trial, beside Optuna's own columns."""
    from study.records import TrialAttrs as A
    from study.records import is_random_draw, recorded_epochs, trial_seconds

    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "epochs_planned": recorded_epochs(trial),
        "epochs_reported": len(trial.intermediate_values),
        "seconds": trial_seconds(trial),  # the epochs' wall-clock seconds
        "device": attrs.get(A.DEVICE_NAME) or attrs.get(A.DEVICE),
        "random_draw": is_random_draw(trial),
    }
    for key in (
        A.PRUNED_REASON,
        A.FAIL_REASON,
        A.REJECTED_DRAW,
        A.INTERRUPTED,
        A.RETRY_OF,
        A.RESUMED_FROM_EPOCH,
        A.SEED,
        A.VARIANT,
    ):
        row[key] = attrs.get(key)
    for step in range(1, epochs + 1):
        row[f"{metric}_epoch_{step}"] = trial.intermediate_values.get(step)
    return row


def trials_table(storage: Any, study_name: str) -> Any:
    """The study's trials as a pandas DataFrame, one row per trial, by number."""
    import optuna
    import pandas as pd

    from study.records import require_study, study_kind
    from study.records.keys import metric_name

    require_study(storage, study_name)
    study = optuna.load_study(study_name=study_name, storage=storage)
    metric = metric_name(study_kind(study.user_attrs))
    frame = study.trials_dataframe(
        attrs=("number", "value", "state", "datetime_start", "datetime_complete", "params")
    ).rename(columns={"value": metric})
    trials = study.get_trials(deepcopy=False)
    steps = [step for t in trials for step in t.intermediate_values]
    epochs = max(steps, default=0)
    extra = pd.DataFrame([_extra(t, metric, epochs) for t in trials], index=frame.index)
    return pd.concat([frame, extra], axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    job = parse_job(argv)
    from study.storage import open_storage

    table = trials_table(open_storage(job.storage, create=False, read_only=True), job.study_name)
    if job.out.suffix == ".parquet":
        table.to_parquet(job.out, index=False)
    else:
        table.to_csv(job.out, index=False)
    print(f"{job.out}: {len(table)} trials of {job.study_name}, {len(table.columns)} columns")
    return 0


if __name__ == "__main__":
    run_command("python -m study.export", main)
