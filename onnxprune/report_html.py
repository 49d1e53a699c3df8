"""The report as one self-contained HTML page: inline CSS and SVG, no script, no fonts
or images fetched from anywhere. Every string that comes from the model (node, tensor
and output names, reasons that quote them) is escaped."""

from __future__ import annotations

import html
import math

from .report import PruneReport

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
           "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")  # fmt: skip

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: #1d2330; background: #f6f7f9; margin: 0; line-height: 1.45; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6em; margin: 0 0 2px; }
h2 { font-size: 1.15em; margin: 32px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid #d9dce3; }
.sub { color: #5a6272; margin: 0 0 18px; overflow-wrap: anywhere; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0 18px; }
.card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 10px 16px;
  min-width: 150px; }
.card .v { font-size: 1.55em; font-weight: 600; }
.card .k { color: #5a6272; font-size: .85em; }
table { border-collapse: collapse; background: #fff; border: 1px solid #dde1e8; font-size: .9em;
  margin: 6px 0; }
th, td { padding: 5px 10px; border-bottom: 1px solid #eceef2; text-align: left;
  vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { overflow-wrap: anywhere; max-width: 520px; }
.chart { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 8px;
  overflow-x: auto; }
svg text { font-family: inherit; font-size: 12px; fill: #1d2330; }
svg .muted { fill: #5a6272; }
.bar-total { fill: #e6e9ef; }
.bar-kept { fill: #3b6fd8; }
.bar-kept.same { fill: #9aa7bd; }
.warn { background: #fff7e0; border: 1px solid #f0d48a; border-radius: 6px; padding: 6px 10px;
  margin: 6px 0; }
.ok { color: #1a7f37; } .bad { color: #b42318; }
.note { color: #5a6272; font-size: .85em; }
details summary { cursor: pointer; color: #3b6fd8; margin: 6px 0; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(n: float | int | None) -> str:
    if n is None:
        return "-"
    if isinstance(n, int) or float(n).is_integer():
        return f"{int(n):,}"
    return f"{n:.4g}"


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _kept(after: float | None, before: float | None) -> str:
    return f"{after / before:.1%}" if before and after is not None else "-"


def render_html(
    report: PruneReport,
    model_name: str = "",
    output_name: str = "",
    file_sizes: tuple[int | None, int | None] | None = None,
) -> str:
    """The whole page. `file_sizes`: the input file's and the pruned model's bytes."""
    title = f"onnxprune report: {model_name}" if model_name else "onnxprune report"
    sub = f"{esc(model_name)} &rarr; {esc(output_name)}" if output_name else esc(model_name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
        "<h1>onnxprune report</h1>",
        f'<p class="sub">{sub}</p>' if sub else "",
        _summary(report, file_sizes),
        _outputs(report),
        _layers(report),
        _sensitivity(report),
        _groups(report),
        _refits(report),
        _warnings(report),
        _timing(report),
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _latency_rows(report: PruneReport) -> list[tuple[str, float, float]]:
    """(label, before ms, after ms) from the report's measured latency (--latency,
    --round-to auto): the medians and the quartiles."""
    lat = report.latency
    if not lat or "before" not in lat or "after" not in lat:
        return []
    before, after = lat["before"], lat["after"]
    return [
        ("latency, median", before["median_ms"], after["median_ms"]),
        ("latency, 25th-75th percentile",
         f"{before['q1_ms']:.3g}-{before['q3_ms']:.3g} ms",
         f"{after['q1_ms']:.3g}-{after['q3_ms']:.3g} ms"),
    ]  # fmt: skip


def _latency_note(report: PruneReport) -> str:
    lat = report.latency
    if not lat or "before" not in lat:
        return ""
    return (
        f'<p class="note" id="latency-note">Latency: {esc(lat.get("provider", ""))}, '
        f"{lat.get('threads', '?')} threads, {lat['after'].get('runs', '?')} interleaved "
        f"runs each after {lat.get('warmup', '?')} warm-up runs; median of the per-run "
        f"ratios (paired) {lat.get('paired_ratio', float('nan')):.3f}.</p>"
    )


def _summary(r: PruneReport, file_sizes) -> str:
    rows = [
        ("parameters", _num(r.params_before), _num(r.params_after),
         _kept(r.params_after, r.params_before)),
        ("MACs", _num(r.macs_before), _num(r.macs_after), _kept(r.macs_after, r.macs_before)),
    ]  # fmt: skip
    cards = [
        (_kept(r.macs_after, r.macs_before), "of the MACs kept"),
        (_kept(r.params_after, r.params_before), "of the parameters kept"),
    ]
    if file_sizes and all(s is not None for s in file_sizes):
        before, after = file_sizes
        rows.append(("file size", _bytes(before), _bytes(after), _kept(after, before)))
        cards.append((_bytes(after), f"model file (was {_bytes(before)})"))
    for label, before, after in _latency_rows(r):
        if isinstance(before, str):
            rows.append((label, before, after, "-"))
            continue
        rows.append((label, f"{before:.3g} ms", f"{after:.3g} ms", _kept(after, before)))
        if after > 0:
            cards.append((f"{before / after:.2f}x", "faster in onnxruntime (median latency)"))
    if r.outputs:
        worst = min(o.cosine for o in r.outputs)
        cards.append((f"{worst:.5f}", "lowest output cosine"))
    card_html = "".join(
        f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div></div>'
        for v, k in cards
    )
    body = "".join(
        f'<tr><th>{a}</th><td class="n">{b}</td><td class="n">{c}</td><td class="n">{d}</td></tr>'
        for a, b, c, d in rows
    )
    return (
        f'<h2>Summary</h2><div class="cards" id="summary-cards">{card_html}</div>'
        '<table id="summary"><tr><th></th><th class="n">before</th><th class="n">after</th>'
        f'<th class="n">kept</th></tr>{body}</table>{_latency_note(r)}'
    )


def _outputs(r: PruneReport) -> str:
    lines = []
    if r.outputs:
        rows = "".join(
            f'<tr><td class="name">{esc(o.name)}</td><td>{esc(o.shape)}</td>'
            f'<td class="n">{o.max_abs_diff:.4g}</td><td class="n">{o.cosine:.6f}</td></tr>'
            for o in r.outputs
        )
        lines.append(
            '<table id="outputs"><tr><th>output</th><th>shape</th><th class="n">max |diff|</th>'
            f'<th class="n">cosine</th></tr>{rows}</table>'
            '<p class="note">The pruned model against the original on the same random '
            "inputs, in onnxruntime.</p>"
        )
    approximate = any(g.approximate and g.kept < g.channels for g in r.groups)
    if r.oracle_rel_diff is not None:
        cls = "ok" if r.oracle_rel_diff < 1e-4 else "bad"
        lines.append(
            f'<p id="oracle">Exactness: the pruned model against the original with the removed '
            f'channels masked: max relative difference <b class="{cls}">'
            f"{r.oracle_rel_diff:.2g}</b>.</p>"
        )
    elif approximate:
        lines.append(
            "<p>Approximate: some pruned groups change normalisation statistics "
            "(--prune-hidden); outputs are not expected to match exactly.</p>"
        )
    if r.calib_rel_error is not None:
        lines.append(
            f"<p>Relative squared output error on the calibration data: "
            f"<b>{r.calib_rel_error:.4g}</b>.</p>"
        )
    if r.budget:
        b = r.budget
        kept = (
            _kept(r.macs_after, r.macs_before)
            if b.get("kind") == "macs"
            else _kept(r.params_after, r.params_before)
        )
        lines.append(
            f"<p>Budget: keep {float(b.get('target') or 0):.0%} of the "
            f"{'MACs' if b.get('kind') == 'macs' else 'parameters'}; "
            f"reached {kept}.</p>"
        )
    if not lines:
        return ""
    return "<h2>Output deviation</h2>" + "".join(lines)


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else "\u2026" + name[-(width - 1) :]


def _layers(r: PruneReport) -> str:
    """One bar per Conv/Gemm/MatMul: the fraction of its output channels kept."""
    if not r.layers:
        return ""
    row, label_w, bar_w, top = 20, 330, 440, 24
    width, height = label_w + bar_w + 140, top + row * len(r.layers) + 8
    out = [
        f'<svg id="layers-chart" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}"><title>channels kept per layer</title>',
        f'<text x="{label_w}" y="14" class="muted">output channels kept (bar: share of the '
        "layer's channels)</text>",
    ]
    for k, layer in enumerate(r.layers):
        y = top + k * row
        before, after = layer["channels_before"], layer["channels_after"]
        frac = after / before if before else 0.0
        name = f"{layer['name']} ({layer['op']})"
        same = " same" if before and after == before else ""
        counts = f"{after} / {before}" if before else "? (shape unknown)"
        out.append(
            f'<g class="layer"><title>{esc(name)}: {counts} channels, MACs '
            f"{_num(layer['macs_before'])} &rarr; {_num(layer['macs_after'])}</title>"
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">'
            f"{esc(_short(name, 46))}</text>"
            f'<rect class="bar-total" x="{label_w}" y="{y + 3}" width="{bar_w}" '
            'height="13" rx="2"/>'
            f'<rect class="bar-kept{same}" data-layer="{esc(layer["name"])}" x="{label_w}" '
            f'y="{y + 3}" width="{bar_w * frac:.1f}" height="13" rx="2"/>'
            f'<text x="{label_w + bar_w + 8}" y="{y + 13}" class="muted">{counts}</text></g>'
        )
    out.append("</svg>")
    pruned = sum(1 for x in r.layers if x["channels_after"] < x["channels_before"])
    return (
        f'<h2>Channels kept per layer</h2><p class="note">{len(r.layers)} compute layers, '
        f"{pruned} with fewer output channels; grey bars: unchanged.</p>"
        f'<div class="chart">{"".join(out)}</div>'
    )


def _sensitivity(r: PruneReport) -> str:
    """The measured sensitivity (budget runs): a log-scale plot and a table."""
    found = (r.budget or {}).get("sensitivity") or []
    if not found:
        return ""
    chosen = {str(k): v for k, v in (r.budget.get("ratios") or {}).items()}
    return (
        '<h2>Sensitivity</h2><p class="note">Relative squared output error on the '
        "calibration data when only that group is pruned, at each measured ratio; a ring "
        "marks the ratio the budget chose.</p>"
        f'<div class="chart">{_sensitivity_svg(found, chosen)}</div>'
        + _sensitivity_table(found, chosen)
    )


def _sensitivity_svg(found: list[dict], chosen: dict) -> str:
    left, right, top, bottom, plot_w, plot_h = 70, 250, 16, 44, 640, 300
    width, height = left + plot_w + right, top + plot_h + bottom
    devs = [d for s in found for d in s["deviation"] if d > 0]
    lo = math.log10(min(devs) / 3) if devs else -6.0
    hi = math.log10(max(devs) * 3) if devs else 0.0
    hi = hi if hi > lo else lo + 1

    def px(ratio: float) -> float:
        return left + ratio * plot_w

    def py(dev: float) -> float:
        value = math.log10(max(dev, 10**lo))
        return top + plot_h * (1 - (value - lo) / (hi - lo))

    out = [
        f'<svg id="sensitivity-chart" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}"><title>sensitivity per group</title>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#c9ced8"/>',
    ]
    decades = range(math.ceil(lo), math.floor(hi) + 1)
    for tick in decades[:: max(1, math.ceil(len(decades) / 7))]:
        y = py(10.0**tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#eceef2"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'class="muted">1e{tick}</text>')  # fmt: skip
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = px(tick)
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                   f'class="muted">{tick:g}</text>')  # fmt: skip
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">fraction of the '
        "group's channels removed</text>"
        f'<text transform="translate(16 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        "output error (log)</text>"
    )
    ranked = sorted(found, key=lambda s: -max(s["deviation"] or [0]))
    for k, s in enumerate(ranked):
        color = PALETTE[k % len(PALETTE)]
        member = s["members"][0] if s["members"] else ""
        label = f"{s['id']}: {member}"
        points = " ".join(
            f"{px(a):.1f},{py(d):.1f}" for a, d in zip(s["ratios"], s["deviation"], strict=True)
        )
        marks = "".join(
            f'<circle cx="{px(a):.1f}" cy="{py(d):.1f}" r="3" fill="{color}"/>'
            for a, d in zip(s["ratios"], s["deviation"], strict=True)
        )
        pick = chosen.get(str(s["id"]))
        if pick in s["ratios"]:
            d = s["deviation"][s["ratios"].index(pick)]
            marks += (f'<circle cx="{px(pick):.1f}" cy="{py(d):.1f}" r="7" fill="none" '
                      f'stroke="{color}" stroke-width="2"/>')  # fmt: skip
        out.append(
            f'<g class="series"><title>{esc(label)}</title><polyline points="{points}" '
            f'fill="none" stroke="{color}" stroke-width="1.6"/>{marks}</g>'
        )
        if k < 20:
            y = top + 8 + k * 15
            out.append(
                f'<rect x="{left + plot_w + 12}" y="{y - 8}" width="10" height="10" '
                f'fill="{color}"/><text x="{left + plot_w + 27}" y="{y + 1}">'
                f"{s['id']}: {esc(_short(member, 32))}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _sensitivity_table(found: list[dict], chosen: dict) -> str:
    ratios = found[0]["ratios"]
    head = "".join(f'<th class="n">error @{a:g}</th>' for a in ratios)
    rows = []
    for s in sorted(found, key=lambda s: -max(s["deviation"] or [0])):
        devs = "".join(f'<td class="n">{d:.3g}</td>' for d in s["deviation"])
        pick = chosen.get(str(s["id"]))
        rows.append(
            f'<tr><td class="n">{s["id"]}</td><td>{esc(s["kind"])}</td>'
            f'<td class="n">{s["channels"]}</td>{devs}'
            f'<td class="n">{"-" if pick is None else f"{pick:g}"}</td>'
            f'<td class="name">{esc(", ".join(s["members"][:2]))}</td></tr>'
        )
    return (
        '<table id="sensitivity"><tr><th class="n">group</th><th>kind</th>'
        f'<th class="n">channels</th>{head}<th class="n">chosen ratio</th><th>members</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _members(members: list[str], n: int = 3) -> str:
    more = f" (+{len(members) - n})" if len(members) > n else ""
    return esc(", ".join(members[:n]) + more)


def _groups(r: PruneReport) -> str:
    if not r.groups:
        return ""
    pruned = [g for g in r.groups if g.kept < g.channels]
    frozen = [g for g in r.groups if g.frozen]
    rows = "".join(
        f'<tr><td class="n">{g.id}</td><td>{esc(g.kind)}'
        f"{' (approximate)' if g.approximate else ''}</td>"
        f'<td class="n">{g.channels}</td><td class="n">{g.kept}</td>'
        f'<td class="name">{_members(g.members)}</td></tr>'
        for g in r.groups
    )
    parts = [
        f"<h2>Groups</h2><p>{len(r.groups)} channel groups, {len(pruned)} pruned, "
        f"{len(frozen)} with frozen channels.</p>",
        f"<details><summary>all {len(r.groups)} groups</summary>"
        '<table id="groups"><tr><th class="n">group</th><th>kind</th><th class="n">channels</th>'
        f'<th class="n">kept</th><th>members</th></tr>{rows}</table></details>',
    ]
    if frozen:
        frows = "".join(
            f'<tr><td class="n">{g.id}</td><td class="n">{g.n_frozen} of {g.channels}</td>'
            f'<td class="name">{_members(g.members)}</td>'
            f'<td class="name">{"<br>".join(esc(why) for why in g.frozen)}</td></tr>'
            for g in frozen
        )
        parts.append(
            "<h2>Frozen groups</h2>"
            '<table id="frozen"><tr><th class="n">group</th><th class="n">frozen</th>'
            f"<th>members</th><th>why (node: reason)</th></tr>{frows}</table>"
        )
    return "".join(parts)


def _refits(r: PruneReport) -> str:
    if not r.refits:
        return ""
    rows = "".join(
        f'<tr><td class="name">{esc(f.get("node", ""))}</td><td>{esc(f.get("method", ""))}</td>'
        f"<td>{esc(f.get('why', '') or '')}</td></tr>"
        for f in r.refits
    )
    return (
        f"<h2>Reconstruction</h2><details><summary>{len(r.refits)} readers refit on the "
        f'calibration data</summary><table id="refits"><tr><th>node</th><th>method</th>'
        f"<th>note</th></tr>{rows}</table></details>"
    )


def _warnings(r: PruneReport) -> str:
    if not r.warnings:
        return ""
    items = "".join(f'<div class="warn">{esc(w)}</div>' for w in r.warnings)
    return f'<h2>Warnings</h2><div id="warnings">{items}</div>'


def _timing(r: PruneReport) -> str:
    if not r.seconds:
        return ""
    laps = ", ".join(f"{esc(k)} {v:.2f} s" for k, v in r.seconds.items())
    return f'<p class="note" style="margin-top:28px">Time: {laps}.</p>'
