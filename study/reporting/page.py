"""The report as one self-contained HTML page: summary, overview table, then each section."""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence

from study.reporting import results, sections
from study.reporting.data import StudyData, time_unit
from study.reporting.part import Part, table
from study.reporting.summary import counts, network, seconds, summary
from study.storage import redact

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; font-size: 1.6rem; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
.meta { color: #666; margin-top: 0; }
nav { position: sticky; top: 0; background: #fff; padding: 0.4rem 0; z-index: 10;
      border-bottom: 1px solid #eee; font-size: 0.95rem; }
nav a { margin-right: 1rem; color: #1f5fa8; text-decoration: none; }
#summary ul.answers { padding-left: 1.2rem; }
#summary ul.answers li { margin: 0.45rem 0; max-width: 70rem; }
code { background: #f4f4f4; padding: 0 0.25rem; font-size: 0.9em; overflow-wrap: anywhere; }
.missing { color: #6b4600; background: #fff6e0; padding: 0.3rem 0.6rem; margin: 0.3rem 0;
           list-style: none; border-left: 3px solid #e0a800; }
ul.missing-list { padding-left: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.95rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td { font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
section { margin-bottom: 2rem; }
"""


def overview_table(studies: Sequence[StudyData]) -> str:
    unit = time_unit(studies).replace("-seconds", "-s")
    rows = []
    for s in studies:
        best = s.best
        spe = s.seconds_per_epoch()
        rows.append(
            [
                s.label(),
                "-" if s.epochs is None else str(s.epochs),
                counts(s),
                "-" if best is None else f"{best.value:.4f}",
                "-" if best is None else str(best.number),
                "-" if best is None else network(best),
                seconds(s.seconds),
                "-" if spe is None else f"{spe:.2f}",
            ]
        )
    header = ["study", "epochs/trial", "trials", "best val acc", "trial", "best network"]
    return table([*header, unit, "s/epoch"], rows, "overview")


def parts(studies: Sequence[StudyData]) -> list[Part]:
    return [
        sections.cost_part(studies),
        sections.history_part(studies),
        sections.curves_part(studies),
        results.ranking_part(studies),
        results.importance_part(studies),
        sections.parallel_part(studies),
        results.reruns_part(studies),
        results.ablation_part(studies),
    ]


def _paragraph(text: str) -> str:
    """A summary sentence with its suggested commands set as code."""
    escaped = html.escape(text)
    start = escaped.find("python -m study.")
    while start >= 0:
        end = escaped.find(")", start)
        end = len(escaped) if end < 0 else end
        # a sentence's final full stop is not part of the command
        if escaped[end - 1] == "." and end == len(escaped):
            end -= 1
        escaped = f"{escaped[:start]}<code>{escaped[start:end]}</code>{escaped[end:]}"
        start = escaped.find("python -m study.", end + len("<code></code>"))
    return escaped


def render(studies: Sequence[StudyData], storage_url: str) -> tuple[str, int, list[str]]:
    """The whole page, how many figures it holds, and the summary paragraphs."""
    sections_ = parts(studies)
    answers = summary(studies)
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = "wrn-study report: " + " vs ".join(s.name for s in studies)
    links = [(p.id, p.title) for p in sections_]  # the summary is at the top already
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(redact(storage_url))}, generated {html.escape(now)}</p>',
        "<nav>" + "".join(f'<a href="#{i}">{html.escape(t)}</a>' for i, t in links) + "</nav>",
        '<section id="summary"><h2>Summary</h2><ul class="answers">',
        *(f"<li>{_paragraph(p)}</li>" for p in answers),
        "</ul>",
        overview_table(studies),
    ]
    missing = [m for p in sections_ for m in p.missing]
    if missing:
        body.append('<h3>Not available yet</h3><ul class="missing-list">')
        body += [f'<li class="missing">{html.escape(m)}</li>' for m in missing]
        body.append("</ul>")
    body.append("</section>")
    figures = 0
    for p in sections_:
        body.append(f'<section id="{p.id}"><h2>{html.escape(p.title)}</h2>')
        if p.intro:
            body.append(f"<p>{html.escape(p.intro)}</p>")
        body += [f'<p class="missing">{html.escape(m)}</p>' for m in p.missing]
        body += p.html
        for div_id, fig in p.figures:
            fig.update_layout(template="plotly_white")  # white plot area: lines stay legible
            # plotly.js is inlined with the first figure only: self-contained, loaded once
            body.append(
                fig.to_html(
                    full_html=False,
                    include_plotlyjs=figures == 0,
                    div_id=div_id,
                    config={"displaylogo": False, "responsive": True},
                )
            )
            figures += 1
        body.append("</section>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    return page, figures, answers
