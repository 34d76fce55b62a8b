"""One section of the report page (``Part``), what the page says above each, and the small
HTML pieces every section uses."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plotly is only needed by the sections that draw
    import plotly.graph_objects as go

# each section's title and intro, in the page's order; {fields} are filled by Part.start
HEADINGS: dict[str, tuple[str, str]] = {
    "cost": (
        "Accuracy against cost",
        "Best validation accuracy so far against the {unit} the study has spent (what its "
        "trials' epochs consumed; every finished trial counts, pruned ones too); then each "
        "complete trial's accuracy against its own cost and its parameter count, with the "
        "Pareto front across all studies; for a --pruner promote study, the rung each "
        "configuration reached.",
    ),
    "history": (
        "Optimisation histories",
        "Each complete trial's validation accuracy by trial number, with the best so far; "
        "pruned trials (×) at the last accuracy they reported.",
    ),
    "curves": (
        "Per-epoch validation accuracy",
        "Every trial's accuracy after each epoch, one line per trial coloured by its last "
        "accuracy (the colour bar): complete trials solid, pruned ones dotted and ending in ×, "
        "running ones dashed, failed ones (or interrupted, queued to resume) dotted ending in "
        "□. Hover a line for its trial.",
    ),
    "ranking": (
        "Does the ranking hold?",
        "The search scores each configuration on a short proxy (a few epochs, validation "
        "split). Trials rerun at full length (python -m study.rerun --top K) show whether the "
        "proxy ranks configurations as the full-length test accuracy does: rank correlations "
        "over the rerun trials (each trial's mean over seeds of its final-epoch test accuracy) "
        "with a one-sided permutation p-value, how often a random order of the trials "
        "correlates at least as well (exact over every order up to {exact} trials, else "
        "{orders:,} random orders), and a 95 % Fisher-z interval from {interval} trials. The "
        "search's winner is still the winner only by more than two standard errors of the gap, "
        "from the seeds' pooled std; else it is tied within seed noise.",
    ),
    "importance": (
        "Parameter importances",
        "How much each searched parameter accounts for: PED-ANOVA (how differently the best "
        "trials set it from the rest) and fANOVA (variance explained in a random-forest fit of "
        "accuracy). Normalised to sum to 1 per method. Both are fitted on complete trials "
        "only: trials a pruner stopped are left out, so they describe the survivors (a "
        "parameter that decides which trials are pruned can look unimportant here), and each "
        "is one fit, with no uncertainty: read them as a rough ranking, not as effect sizes "
        "(the ablation measures those).",
    ),
    "parallel": (
        "Parallel coordinates",
        "Each complete trial as a line through its parameter values, coloured by validation "
        "accuracy (Viridis: yellow best, dark purple worst).",
    ),
    "reruns": (
        "Reruns on the test set",
        "Trials retrained on the full training set for the recipe's length "
        "(python -m study.rerun): each seed's test accuracy after the last epoch, and their "
        "mean ± std (a maximum over epochs would be chosen on the test set).",
    ),
    "ablation": (
        "Ablations",
        "Each factor switched off in turn from the base configuration (python -m study.ablate), "
        "validation accuracy over seeds, and its difference from the base seed by seed with a "
        "95 % paired t interval (uncorrected) and a Holm-adjusted p over the factors, sorted by "
        "effect: the most harmful removal first.",
    ),
}


@dataclass
class Part:
    """One section of the page: figures and tables, or what is missing for them."""

    id: str
    title: str
    intro: str = ""
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, part_id: str, **fields: object) -> Part:
        """An empty section under its heading in HEADINGS, ``fields`` filled into its intro."""
        title, intro = HEADINGS[part_id]
        return cls(part_id, title, intro.format(**fields))


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def plural(n: object, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], name: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<table data-table="{html.escape(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )
