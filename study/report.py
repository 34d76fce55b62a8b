"""``python -m study.report``: one self-contained HTML page that answers what the studies found.

python -m study.report --out report.html                        # every search study in the storage
python -m study.report --studies wrn28_10 light --out report.html

Cost against accuracy (the Pareto front across studies), optimisation histories, per-epoch
curves, whether the search's ranking holds at full length, parameter importances (PED-ANOVA and
fANOVA), parallel coordinates, rerun test accuracies and ablation effects, under a written
summary. Plotly's script is embedded once, so the page opens offline. A study still running, or
with too few trials for an analysis, is reported as it stands, with what is missing said in
words. The parts live in ``study.reporting``; this module is the command.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from study.cli import Parser, add_storage_flag, run_command
from study.errors import UsageError


def build_parser() -> Parser:
    p = Parser(
        prog="python -m study.report",
        description=__doc__.split("\n\n")[0].splitlines()[0],
        examples=[
            "python -m study.report --out report.html   # every search study in the storage",
            "python -m study.report --storage studies/smoke.db --studies smoke --out smoke.html",
        ],
    )
    add_storage_flag(p)
    p.add_argument(
        "--studies",
        nargs="+",
        metavar="NAME",
        help="search studies to compare (default: every search study in the storage)",
    )
    p.add_argument("--out", metavar="PATH", default="report.html", help="the HTML file to write")
    return p


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written, before anything is read or rendered.

    Nothing is created here: the folders are made only once the page exists.
    """
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory")
    if out.exists():
        if not os.access(out, os.W_OK):
            raise UsageError(f"--out {out}: cannot be written (permission denied)")
        return
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot be written in {parent} (permission denied)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    check_out(out)
    import optuna  # imported after the cheap checks: usage errors come fast

    from study.reporting.data import collect
    from study.reporting.page import render
    from study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage, create=False, read_only=True)  # a report only reads
    studies = collect(storage, args.studies, args.storage)
    page, figures, answers = render(studies, args.storage)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as e:  # e.g. the disk filled up while writing
        raise UsageError(f"--out {out}: cannot be written ({e.strerror})") from None
    print(f"wrote {out}: {figures} figures, studies {', '.join(s.name for s in studies)}")
    for paragraph in answers:
        print(f"- {paragraph}")
    return 0


if __name__ == "__main__":
    run_command("python -m study.report", main)
