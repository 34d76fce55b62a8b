"""What optuna-dashboard shows beyond trials: artifacts and a markdown note per study.

Artifacts go through Optuna's artifact store (``optuna.artifacts``): a learning curve per trial
(a CSV the dashboard shows as a table, and an SVG plot it shows as an image); a kept checkpoint
stays in the checkpoint folder only, its path in the trial's ``checkpoint``. Serve them with::

    optuna-dashboard sqlite:///studies/wrn.db --artifact-dir studies/artifacts --host 127.0.0.1
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from study.ablation.effects import skipped_words
from study.pruning import pruner_note
from study.records import (
    AblationSettings,
    SearchSettings,
    Tally,
    TrialAttrs,
    ablation_path,
    promotion_counts,
    source_study,
    study_kind,
    tally,
)
from study.records.keys import metric_name
from study.reporting.commands import ablation_flags, command, data_flags, storage_flags
from study.reporting.part import plural
from study.sampling import describe_startup
from study.storage import StorageError, sqlite_path
from wrn.network import network_name

if TYPE_CHECKING:  # wrn.train imports torch: the notes and curves do not need it
    from search_spaces import SearchSpace
    from wrn.train import EpochStats

DEFAULT_ARTIFACT_DIR = "studies/artifacts"
CURVE_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "eval_loss",
    "eval_acc",
    "lr",
    "seconds",
    "images_per_s",
)


def default_artifact_dir(storage_url: str) -> Path:
    """``artifacts/`` beside a SQLite storage file (``studies/artifacts`` for the default one).

    Other back ends have no folder of their own, so they share ``studies/artifacts``.
    """
    try:
        path = sqlite_path(storage_url)
    except Exception:  # a malformed URL is reported by open_storage, not here
        path = None
    return Path(DEFAULT_ARTIFACT_DIR) if path is None else path.parent / "artifacts"


def artifact_store(artifact_dir: str | Path) -> FileSystemArtifactStore:
    """A file-system artifact store in ``artifact_dir`` (created); StorageError if it cannot be."""
    try:
        Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{artifact_dir}: cannot hold artifacts ({e.strerror})") from None
    return FileSystemArtifactStore(str(artifact_dir))


def _rows(history: Sequence[EpochStats | Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        dataclasses.asdict(s) if dataclasses.is_dataclass(s) else dict(s)  # type: ignore[arg-type]
        for s in history
    ]


def learning_curve_csv(history: Sequence[EpochStats | Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CURVE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rows(history))
    return out.getvalue()


def accuracy_range(values: Sequence[float]) -> tuple[float, float]:
    """An axis range around the data, on a round step, within [0, 1]: a run at 1-6 % fills
    the plot instead of lying flat at the bottom of a 0-1 axis."""
    lo, hi = min(values), max(values)
    spread = max(hi - lo, 0.01)  # one point of accuracy at least: a flat curve stays readable
    step = 10 ** math.floor(math.log10(spread / 4))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if spread / (step * m) <= 4)
    low = max(0.0, math.floor(lo / step) * step)
    high = min(1.0, math.ceil(hi / step) * step)
    if high - low < 4 * step:  # pad an almost flat curve to four grid steps
        high = min(1.0, low + 4 * step)
        low = max(0.0, high - 4 * step)
    return round(low, 6), round(high, 6)  # no float residue such as 0.19999999999999996


def _tick(value: float) -> str:
    """An axis label: as many decimals as the grid step needs (2 to 4)."""
    text = f"{value:.4f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.split(".")[1]))


def learning_curve_svg(
    history: Sequence[EpochStats | Mapping[str, Any]], title: str, eval_name: str = "val"
) -> str:
    """A small standalone SVG of train and eval accuracy per epoch (no plotting library)."""
    rows = _rows(history)
    width, height, pad = 480, 300, 44
    epochs = [r["epoch"] for r in rows]
    first, last = min(epochs), max(epochs)
    span = max(last - first, 1)
    low, high = accuracy_range([r[k] for r in rows for k in ("train_acc", "eval_acc")])

    def xy(epoch: float, acc: float) -> str:
        x = pad + (epoch - first) / span * (width - 2 * pad)
        y = height - pad - (acc - low) / (high - low) * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{pad}" y="20" font-size="14">{escape(title)}</text>',
    ]
    for k in range(5):
        tick = low + k * (high - low) / 4
        y = height - pad - k / 4 * (height - 2 * pad)
        parts.append(
            f'<line x1="{pad}" y1="{y:.1f}" x2="{width - pad}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{pad - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick(tick)}</text>'
        )
    parts.append(
        f'<text x="{width / 2:.0f}" y="{height - 10}" text-anchor="middle">'
        f"epoch {first} to {last}</text>"
    )
    for key, colour in (("train_acc", "#1f77b4"), ("eval_acc", "#d62728")):
        points = " ".join(xy(r["epoch"], r[key]) for r in rows)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
        )
        for r in rows:
            cx, cy = xy(r["epoch"], r[key]).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
    parts.append(
        f'<text x="{width - pad}" y="20" text-anchor="end" fill="#1f77b4">train acc</text>'
        f'<text x="{width - pad}" y="36" text-anchor="end" fill="#d62728">'
        f"{escape(eval_name)} acc</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def upload_learning_curve(
    trial: optuna.Trial,
    store: FileSystemArtifactStore,
    history: Sequence[EpochStats | Mapping[str, Any]],
    eval_name: str = "val",
) -> list[str]:
    """Attach the per-epoch curve to a running trial: a CSV table and an SVG plot.

    Call it once, before the trial is told (Optuna refuses attributes on a finished trial),
    e.g. from a ``finally`` around training so pruned and failed trials get their curve too.
    Returns the artifact ids; nothing is uploaded for an empty history.
    """
    if not history:
        return []
    ids = []
    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / f"learning_curve_trial{trial.number}"
        files = {
            stem.with_suffix(".csv"): learning_curve_csv(history),
            stem.with_suffix(".svg"): learning_curve_svg(
                history, f"{trial.study.study_name} trial {trial.number}", eval_name
            ),
        }
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
            ids.append(
                upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
            )
    return ids


def name_metric(study: optuna.Study, kind: str) -> None:
    """Name the study's objective (``metric_name(kind)``) so optuna-dashboard does not call it
    "Objective 0". Call it once the study is created or loaded."""
    name = metric_name(kind)
    if study.metric_names != [name]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([name])


def save_figure(study: optuna.Study, figure: Any, figure_id: str) -> None:
    """Show a plotly figure on the study's page in the dashboard (replaced on each call)."""
    # imported here: optuna_dashboard (with its scikit-learn) adds ~0.8 s to every start-up
    from optuna_dashboard import save_plotly_graph_object

    save_plotly_graph_object(study, figure, graph_object_id=figure_id)


# -- the study note ----------------------------------------------------------------------------

NOTE_STATES = ("complete", "pruned", "fail", "running")  # the states a note counts, in order


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _counts(study: optuna.Study) -> Tally:
    return tally(study.get_trials(deepcopy=False))


def _network(fixed: Mapping[str, Any], recipe: Mapping[str, Any]) -> str:
    """The network a search trains: ``--set`` depth/width first, then the recipe's."""
    depth = fixed.get("depth", recipe.get("depth", "?"))
    width = fixed.get("width", recipe.get("width", "?"))
    return network_name(depth, width)


def _search_note(study: optuna.Study, settings: SearchSettings, storage_url: str) -> list[str]:
    space, fixed = settings.space, settings.fixed
    network = _network(fixed, space.recipe)
    description = space.description
    if any(k in fixed for k in ("depth", "width")):
        description = f"{network} (fixed with `--set`) in place of the recipe's: {description}"
    trials = _counts(study)
    startup = describe_startup(settings.sampler_startup_trials)
    rejected = plural(trials.rejected, "draw")
    return [
        f"## {study.study_name}: search over `{space.name}`, {network}",
        "",
        description,
        "",
        "### Budget",
        f"- {plural(settings.epochs, 'epoch')} per trial; the recipe trains "
        f"{settings.recipe_epochs} (rerun the best trials at that length)",
        f"- dataset `{settings.dataset}`, {settings.val_size} validation images "
        f"held out of the training set, seed {settings.seed}",
        f"- pruner `{settings.pruner}`{pruner_note(settings.pruner)}, sampler `{settings.sampler}`"
        + ("" if settings.sampler != "tpe" else f": {startup}"),
        "",
        *_space_table(space, fixed),
        "",
        "### Best so far",
        f"Trials: {trials.describe(NOTE_STATES, 'no trials yet')}."
        + (f" {rejected} over the cost cap, drawn again." if trials.rejected else "")
        + (f" {p.describe()}." if (p := promotion_counts(study.get_trials())) else ""),
        _best_line(trials.best),
        "",
        *_next_commands(study.study_name, settings, storage_url),
    ]


def _space_table(space: SearchSpace, fixed: Mapping[str, Any]) -> list[str]:
    """What each parameter is searched over (or fixed to), beside the recipe's value."""
    lines = ["### Space", "| parameter | searched | recipe |", "| --- | --- | --- |"]
    for name, spec in space.params.items():
        if name in fixed:
            searched = f"fixed to {_value(fixed[name])} by `--set`"
        elif spec.type == "categorical":
            searched = ", ".join(_value(c) for c in spec.choices or ())
        else:
            log = " (log)" if spec.log else ""
            step = f" step {_value(spec.step)}" if spec.step is not None else ""
            searched = f"{_value(spec.low)} to {_value(spec.high)}{step}{log}"
        lines.append(f"| `{name}` | {searched} | {_value(space.recipe.get(name, '-'))} |")
    other = {k: v for k, v in fixed.items() if k not in space.params}
    if other:
        shown = ", ".join(f"`{k}={_value(v)}`" for k, v in other.items())
        lines += ["", f"Also fixed with `--set`: {shown}"]
    return lines


def _best_line(best: optuna.trial.FrozenTrial | None) -> str:
    if best is None:
        return "No complete trial yet."
    shown = ", ".join(f"`{k}={_value(v)}`" for k, v in best.params.items())
    num_params = best.user_attrs.get(TrialAttrs.NUM_PARAMS)
    size = f", {num_params:,} parameters" if num_params else ""
    return f"Trial {best.number}: val acc **{best.value:.4f}**{size}; {shown or '-'}"


def _next_commands(name: str, settings: SearchSettings, storage_url: str) -> list[str]:
    """The rerun, ablation and report that follow a search, with its storage."""
    flags = storage_flags(storage_url)
    epochs, budget = settings.epochs, settings.space.search_epochs
    # a study run at other than its space's budget (a smoke run) is rerun at its own length
    short = ["--epochs", str(epochs)] if epochs and budget and epochs != budget else []
    data = data_flags(settings)  # a copied command reads the searched data, not ./data
    rerun = ["--study-name", name, *flags, *short]
    length = f"{epochs} epochs, as this study" if short else "the recipe's full length"
    return [
        "### Next",
        "```",
        command("python", "-m", "study.rerun", *rerun, "--top", "5", "--seeds", "2", *data),
        command("python", "-m", "study.ablate", "--study-name", name, *flags, *short, *data),
        command("python", "-m", "study.report", *flags, "--out", "report.html"),
        "```",
        f"`study.rerun` retrains the 5 best trials for {length} and tests them; "
        "`study.ablate` switches each regulariser off in turn.",
    ]


def _ablation_note(
    study: optuna.Study, settings: AblationSettings, storage_url: str, effects_md: str | None
) -> list[str]:
    base = settings.base
    base_text = f"the best trial ({settings.base_trial})" if base == "best" else "the recipe"
    seeds = ", ".join(str(s) for s in settings.seeds)
    lines = [
        f"## {study.study_name}: ablation of `{settings.source_study}`",
        "",
        f"Base: {base_text}. Each factor is switched off in turn, "
        f"{plural(settings.epochs, 'epoch')} per run, seeds {seeds}; values are validation "
        "accuracy.",
        f"Trials: {_counts(study).describe(NOTE_STATES, 'no trials yet')}.",
    ]
    if settings.skipped:
        lines.append(f"Not ablated: {skipped_words(settings)}.")
    if effects_md:
        lines += ["", "### Effects", effects_md]
    path = ablation_path(study.user_attrs)
    if path:
        lines += ["", "### Ablation path (recipe to best)"]
        lines += [f"{s.step}. {s.param or 'start (recipe)'}: {s.mean:.4f}" for s in path]
    flags = ablation_flags(settings, storage_url, walked_path=bool(path))
    lines += ["", "### Resume or extend", "```", command("python", "-m", "study.ablate", *flags)]
    return [*lines, "```"]


def _other_note(study: optuna.Study) -> list[str]:
    attrs = study.user_attrs
    trials = _counts(study)
    counts = trials.describe(NOTE_STATES, "no trials yet")
    lines = [f"## {study.study_name}", "", f"Kind: {study_kind(attrs)}. Trials: {counts}."]
    source = source_study(attrs)
    if source:
        lines.append(f"Source study: `{source}`.")
    if trials.best is not None:
        lines.append(f"Best: trial {trials.best.number}, value {trials.best.value:.4f}.")
    return lines


def study_note(study: optuna.Study, storage_url: str, effects_md: str | None = None) -> str:
    """The markdown note for a study: what it searched, its budget, best so far, what next."""
    search = SearchSettings.of(study.user_attrs)
    ablation = AblationSettings.of(study.user_attrs)
    if search is not None:
        lines = _search_note(study, search, storage_url)
    elif ablation is not None:
        lines = _ablation_note(study, ablation, storage_url, effects_md)
    else:
        lines = _other_note(study)
    return "\n".join(lines) + "\n"


def write_study_note(study: optuna.Study, storage_url: str, effects_md: str | None = None) -> str:
    """Save (or refresh) the study's markdown note, shown on its page in optuna-dashboard."""
    body = study_note(study, storage_url, effects_md)
    from optuna_dashboard import save_note

    save_note(study, body)
    name_metric(study, study_kind(study.user_attrs))
    return body


def note_callback(storage_url: str) -> Any:
    """A ``study.optimize`` callback that refreshes the note after each trial."""

    def refresh(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        write_study_note(study, storage_url)

    return refresh
