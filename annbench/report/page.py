"""The report's page: index.html, from a jinja2 template with autoescaping.

Owns the markup and style of index.html: the recommendation first (one row per workload, the tie set and
the NOISY warning under the winner, the ranked and rejected tables folded away), then per scenario its
figures (each linking to its SVG), notes, configurations table and other tables, then the failed runs
and unreadable files. The words and numbers come from `annbench.recommend` and
`annbench.report.tables`; this module only arranges them.

Every value is escaped by the template engine (`autoescape=True`): a scenario description, an error
message or a file name cannot inject markup, and no call site has to remember to escape. The template is
kept in this module, not in a data file, so an installed package needs no package data to render it.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from annbench.atomic import atomic_path
from annbench.recommend import Constraints, Recommendation, ranked_rows, rejected_rows
from annbench.report.tables import Report, config_table, config_table_notes, scenario_key


@dataclass(frozen=True)
class Table:
    """A table as the page shows it: row `highlight` is the winner's (green), rows in `marked` its ties
    within noise (amber); columns in `numeric` are right-aligned, those in `wrap` wrap."""

    head: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: Collection[int] = field(default_factory=frozenset)
    wrap: Collection[int] = field(default_factory=frozenset)
    highlight: int | None = None
    marked: Collection[int] = field(default_factory=frozenset)


TEMPLATE = """\
{%- macro table(t) -%}
<div class='tablewrap'><table><thead><tr>{% for h in t.head %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in t.rows %}
<tr{% if loop.index0 == t.highlight %} class='win'{% elif loop.index0 in t.marked %} class='tie'{% endif %}>
{%- for cell in row -%}
{%- set cls = 'num' if loop.index0 in t.numeric else ('wrap' if loop.index0 in t.wrap else '') -%}
<td{% if cls %} class='{{ cls }}'{% endif %}>{{ cell }}</td>
{%- endfor -%}
</tr>
{% endfor %}
</tbody></table></div>
{% endmacro -%}
<!doctype html><html lang='en'><head><meta charset='utf-8'>
<meta name='viewport' content='width=device-width, initial-scale=1'>
<title>annbench report — {{ results_dir }}</title><style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1340px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:6px 0 2px} h2{font-size:19px;margin:34px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px} .muted{color:#666;font-size:13px}
.rec{background:#fff;border:1px solid #d0d7de;border-left:6px solid #2da44e;border-radius:6px;padding:4px 18px 12px;
 margin:14px 0} .rec.none{border-left-color:#cf222e} .rec h2{border:none;margin:10px 0 4px}
.rectable{border-collapse:collapse;width:100%;margin:8px 0 10px;font-size:14px}
.rectable td{white-space:normal;vertical-align:top;padding:7px 10px;border-bottom:1px solid #eee}
.rectable td:first-child{width:30%} .rectable td.why{color:#333;font-size:13px}
.winner{font-weight:600;color:#116329;font-size:15px} .nowinner{font-weight:600;color:#a40e26}
tr.fail td{background:#fff5f5} .ctx{color:#666;font-size:12px;margin-top:2px}
.constraints{margin:4px 0 10px;padding-left:18px;font-size:13px;color:#333}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px;margin:10px 0}
figure{margin:0;background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px}
figure.wide{grid-column:1/-1} figure img{width:100%;height:auto;display:block}
figcaption{font-size:12.5px;color:#444;margin-top:4px}
.tablewrap{max-height:420px;overflow:auto;border:1px solid #e1e4e8;border-radius:6px;background:#fff;margin:8px 0}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f3f4f6;position:sticky;top:0}
td.wrap{white-space:normal;max-width:520px;min-width:230px} tr.win td{background:#e9f7ef}
tr.tie td{background:#fff8e1} .noisy{color:#8a5a00;font-weight:600;font-size:13px;margin-top:4px}
.ties{font-size:12.5px;color:#333;margin-top:4px} .ties li{margin:1px 0}
details{margin:6px 0} summary{cursor:pointer;color:#0969da}
.notes li{font-size:13px;color:#6a4a00} .bad{color:#a40e26}
nav a{margin-right:14px}
</style></head><body><main>
<h1>annbench report</h1>
<div class='muted'>Results: <code>{{ results_dir }}</code> · {{ n_runs }} ok run(s), {{ n_failed }} failed or timed \
out, {{ n_bad }} unreadable · generated {{ generated }} · figures link to their SVG</div>
{% if scenarios | length > 1 %}
<nav>{% for s in scenarios %}<a href='#s-{{ s.key }}'>{{ s.name }}</a>{% endfor %}<a href='#failures'>failures</a></nav>
{% endif %}
<section id='recommendation' class='rec{{ " none" if no_winner else "" }}'><h2>Recommendation</h2>
<div class='muted'>Constraints used (set them with the same options of <code>annbench plot</code> and \
<code>annbench recommend</code>):</div><ul class='constraints'>
{% for line in constraints %}<li>{{ line }}</li>{% endfor %}
</ul><table class='rectable'><thead><tr><th>workload</th><th>recommended</th><th>why</th></tr></thead><tbody>
{% for r in recs %}
<tr class='{{ "ok" if r.winner else "fail" }}'><td><b>{{ r.title }}</b> <span class='muted'>({{ r.timeline }})</span>\
<div class='ctx'>{{ r.context }}</div></td><td>
{%- if r.winner -%}
<span class='winner'>{{ r.winner }}</span>
{%- if r.build %}<div class='ctx'>build: {{ r.build }}</div>{% endif -%}
{%- if r.ties %}<div class='ties'>tied within noise — {{ r.ties | length }} configurations whose intervals overlap \
the best figure; the recommended one was picked by the secondary criteria:<ul>
{%- for t in r.ties %}<li>{{ t }}{{ " (recommended)" if loop.first else "" }}</li>{% endfor %}</ul></div>{% endif -%}
{%- if r.noisy %}<div class='noisy'>NOISY: {{ r.noisy_whose }} had search steps with disturbed timings \
({{ r.noisy }}); rerun on a quiet machine before trusting the latency ranking.</div>{% endif -%}
{%- else -%}
<span class='nowinner'>nothing feasible</span>
{%- endif -%}
</td><td class='why'>{{ r.why }}</td></tr>
{% endfor %}
</tbody></table>
{% for note in rec_notes %}<p class='muted'>{{ note }}</p>
{% endfor %}
{% for r in recs %}
<details{{ " open" if r.open else "" }}><summary>{{ r.title }}: ranked table ({{ r.n_ranked }} feasible\
{{ (", %d tied within noise" % (r.ties | length)) if r.ties else "" }}) and rejections ({{ r.n_rejected }}, \
with the first constraint each fails)</summary>
{% if r.ranked %}{{ table(r.ranked) }}{% endif %}
{% if r.rejected %}{{ table(r.rejected) }}{% endif %}
</details>
{% endfor %}
</section>
{% for s in scenarios %}
<h2 id='s-{{ s.key }}'>{{ s.name }} <span class='muted'>({{ s.timeline }})</span></h2>
<p class='muted'>{{ s.context }}</p>
{% if s.figures %}
<div class='figs'>
{% for f in s.figures %}
<figure{% if f.wide %} class='wide'{% endif %}><a href='{{ f.svg }}'><img src='{{ f.png }}' alt='{{ f.title }}' \
loading='lazy'></a><figcaption><b>{{ f.title }}.</b> {{ f.caption }}</figcaption></figure>
{% endfor %}
</div>
{% endif %}
{% if s.notes %}
<h3>Worth a second look</h3><ul class='notes'>{% for n in s.notes %}<li>{{ n }}</li>{% endfor %}</ul>
{% endif %}
{% if s.configs.rows %}
<h3>Configurations ({{ s.configs.rows | length }})</h3>{{ table(s.configs) }}
{% for n in s.config_notes %}<p class='muted'>{{ n }}</p>
{% endfor %}
{% endif %}
{% for title, t in s.tables %}
<h3>{{ title }}</h3>{{ table(t) }}
{% endfor %}
{% endfor %}
<h2 id='failures'>Failed and timed-out runs</h2>
{% if failures.rows %}{{ table(failures) }}
{% else %}<p class='muted'>None: every run finished.</p>
{% endif %}
{% if bad.rows %}
<h3 class='bad'>Unreadable result files</h3>{{ table(bad) }}
{% endif %}
</main></body></html>
"""


@functools.cache
def _template() -> Any:
    import jinja2  # deferred: ~25 ms to import; every CLI command imports this package, only index.html needs it

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    return env.from_string(TEMPLATE)


def _rec_view(rec: Recommendation) -> dict[str, Any]:
    """One workload's row of the recommendation table and its folded ranked and rejected tables."""
    w = rec.winner
    ties = [c.short() for c in rec.ties] if len(rec.ties) > 1 else []
    head, rows = ranked_rows(rec)
    rhead, rrows = rejected_rows(rec)
    ranked = None
    if rows:
        numeric = {i for i, h in enumerate(head) if h not in ("index", "build", "search", "policy", "noise")}
        ranked = Table(head, rows, numeric=numeric, highlight=0,
                       marked=set(range(1, len(rec.ties))) if ties else frozenset())
    view: dict[str, Any] = {
        "title": rec.workload.title(), "timeline": rec.workload.timeline, "context": rec.context, "why": rec.why(),
        "winner": w.short() if w is not None else None,
        "build": w.build_text() if w is not None and w.build_params else "",
        "ties": ties, "noisy": "", "noisy_whose": "",
        # open when there is a tie to read or a noisy figure to doubt
        "open": bool(ties or rec.noisy),
        "n_ranked": len(rows), "n_rejected": len(rrows),
        "ranked": ranked, "rejected": Table(rhead, rrows, wrap={4}) if rrows else None,
    }
    if w is not None and rec.noisy:
        view["noisy"] = "; ".join(f"{c.short()}: {len(c.noisy_steps)} of {len(c.steps)} steps" for c in rec.noisy)
        view["noisy_whose"] = (f"{len(rec.noisy)} of the {len(rec.ties)} tied configurations" if ties
                               else "the recommended configuration")
    return view


def render(rep: Report, results_dir: Path, cons: Constraints, generated: datetime | None = None) -> str:
    """index.html's text for `rep` (the report of `results_dir`, made with the constraints `cons`)."""
    ks = {c.k for r in rep.recommendations for c in r.ranked} | \
         {c.k for r in rep.recommendations for c, _ in r.rejected}
    k = next(iter(ks)) if len(ks) == 1 else None
    # the verdict first: daily scenarios first, then by name and size
    recs = sorted(rep.recommendations, key=lambda r: (r.workload.timeline != "daily", r.workload.scenario,
                                                      r.workload.size or 0))
    scenarios = []
    for s in rep.scenarios:
        head, rows = config_table(s.configs)
        numeric = {i for i, h in enumerate(head) if h not in ("size", "index", "build", "search", "policy", "noise")}
        scenarios.append({
            "key": scenario_key(s.name), "name": s.name, "timeline": s.timeline,
            "context": s.context, "notes": s.notes,
            "figures": [{"wide": not f.key.endswith(("-recall-p50", "-recall-qps")), "svg": f.svg.name,
                         "png": f.png.name, "title": f.title, "caption": f.caption} for f in s.figures],
            "configs": Table(head, rows, numeric=numeric, wrap={head.index("build")} if rows else frozenset()),
            "config_notes": config_table_notes(s.configs) if rows else [],
            "tables": [(title, Table(thead, trows)) for title, thead, trows in s.tables],
        })
    failures = Table(["scenario", "index", "policy", "status", "error"],
                     [[f.workload.title(), f.label, f.policy, f.status, f.error] for f in rep.failures], wrap={4})
    when = generated or datetime.now(timezone.utc)
    return _template().render(
        results_dir=str(results_dir), generated=when.strftime("%Y-%m-%d %H:%M UTC"),
        n_runs=sum(len({c.run_id for c in s.configs}) for s in rep.scenarios), n_failed=len(rep.failures),
        n_bad=len(rep.bad), scenarios=scenarios, no_winner=not any(r.winner for r in recs),
        constraints=cons.describe(k), recs=[_rec_view(r) for r in recs], rec_notes=rep.rec_notes,
        failures=failures, bad=Table(["file", "why"], [[str(p), why] for p, why in rep.bad], wrap={1}))


def write_html(rep: Report, results_dir: Path, cons: Constraints) -> Path:
    """Write index.html (`rep.index_html`), all or nothing (annbench.atomic)."""
    text = render(rep, results_dir, cons)
    with atomic_path(rep.index_html) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return rep.index_html
