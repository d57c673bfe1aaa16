"""Rendering a ``DriftResult``: a Rich console summary, JSON (schema ``inspekt.drift/1``) and a
self-contained HTML report (figures and thumbnails inlined; no CDN, works offline)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from inspekt.drift.types import Check, DriftResult
from inspekt.errors import ImageLoadError
from inspekt.io import output_file
from inspekt.profiling.properties import CHANNELS, PROPERTY_NAMES

SCHEMA = "inspekt.drift/1"
EXAMPLES = 3  # thumbnails per side and end of the top property's range
THUMB = 128


def light(check: Check, alpha: float) -> str:
    """red = drifted; amber = a real but small difference (significant, effect below the minimum);
    green = no significant difference."""
    if check.p_adjusted > alpha:
        return "green"
    return "red" if check.effect >= check.min_effect else "amber"


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _clean(value.item())
    return value


def to_dict(result: DriftResult) -> dict[str, Any]:
    """The JSON document (schema ``inspekt.drift/1``, documented in docs/drift.md)."""
    cfg = result.config
    checks = [
        {
            "name": c.name,
            "kind": c.kind,
            "drifted": c.drifted,
            "light": light(c, result.alpha),
            "statistic": c.statistic,
            "statistic_name": c.statistic_name,
            "p_value": c.p_value,
            "p_adjusted": c.p_adjusted,
            "effect": c.effect,
            "effect_name": c.effect_name,
            "min_effect": c.min_effect,
            "reference": c.reference,
            "current": c.current,
            "details": c.details,
        }
        for c in result.checks
    ]
    return _clean(
        {
            "schema": SCHEMA,
            "verdict": result.verdict,
            "drift": result.drift,
            "inconclusive": result.inconclusive,
            "drifted": [c.name for c in result.drifted],
            "alpha": result.alpha,
            "n_reference": result.n_reference,
            "n_current": result.n_current,
            "sources": result.sources,
            "checks": checks,
            "domain_importances": result.importances,
            "skipped": {
                "reference": [vars(s) for s in result.skipped_reference],
                "current": [vars(s) for s in result.skipped_current],
            },
            "notes": result.notes,
            "settings": {
                "permutations": cfg.permutations,
                "checks": list(cfg.checks),
                "min_effect": cfg.min_effect,
                "min_js": cfg.min_js,
                "min_domain_score": cfg.min_domain_score,
                "min_prediction_effect": cfg.min_prediction_effect,
                "min_embedding_effect": cfg.min_embedding_effect,
                "kl_threshold": cfg.kl_threshold,
                "max_images": cfg.max_images,
                "seed": cfg.seed,
                "min_side": result.reference_profile.min_side if result.reference_profile else None,
            },
        }
    )


def write_json(result: DriftResult, path: str | Path) -> Path:
    """Write the JSON document."""
    path = output_file(path, "drift.json")
    path.write_text(json.dumps(to_dict(result), indent=2) + "\n", encoding="utf-8")
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1000 or abs(value) < 0.001 and value else f"{value:.{digits}f}"


def kl_rule_lines(result: DriftResult) -> list[str]:
    """The fixed rule "KL(reference || current) > threshold" per pixel histogram, when asked for
    (``kl_threshold``); shown beside the verdict, never part of it."""
    return [
        f"fixed rule KL(ref||cur) > {c.details['kl_threshold']:g}: "
        f"{'fires' if c.details['kl_rule_fires'] else 'does not fire'} for {c.name} (KL {_fmt(c.details['kl'])})"
        for c in result.checks
        if "kl_rule_fires" in c.details
    ]


def print_console(result: DriftResult, console) -> None:
    """Verdict first, then one table row per check."""
    from rich.markup import escape
    from rich.table import Table

    style = "bold red" if result.drift else "bold yellow" if result.inconclusive else "bold green"
    console.print(
        f"[{style}]{result.verdict}[/] (alpha {result.alpha}, {result.n_reference} reference vs "
        f"{result.n_current} current images)",
        highlight=False,
    )
    for side, source in result.sources.items():
        console.print(f"{side}: {escape(source)}", highlight=False)
    table = Table(show_edge=False, header_style="bold")
    for column in ("check", "p adj.", "effect / min", "reference -> current", ""):
        table.add_column(column, justify="left" if column == "check" else "right", no_wrap=True)
    marks = {"red": "[red]drift[/]", "amber": "[yellow]small[/]", "green": "[green]ok[/]"}
    for c in result.checks:
        change = (
            f"{_fmt(c.reference)} -> {_fmt(c.current)}" if c.reference is not None or c.current is not None else "-"
        )
        table.add_row(
            c.name,
            _fmt(c.p_adjusted),
            f"{_fmt(c.effect)} / {_fmt(c.min_effect)}",
            change,
            marks[light(c, result.alpha)],
        )
    console.print(table)
    if result.importances and result.drift:
        top = ", ".join(f"{k} {v:.3f}" for k, v in list(result.importances.items())[:3] if v > 0)
        if top:
            console.print(f"domain classifier: most telling properties {top}", highlight=False)
    for rule in kl_rule_lines(result):
        console.print(rule, highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    for side, skipped in (("reference", result.skipped_reference), ("current", result.skipped_current)):
        if skipped:
            console.print(f"skipped {len(skipped)} unreadable {side} image(s):", highlight=False)
            for s in skipped[:10]:
                console.print(f"  {s.path}: {s.reason}", highlight=False, markup=False)


# --- HTML ---------------------------------------------------------------------------------------


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def histogram_png(result: DriftResult) -> bytes | None:
    """Reference and current pixel histograms per channel, as a PNG (None when no channel is shared)."""
    from inspekt.figures import new_figure

    ref, cur = result.reference_profile, result.current_profile
    channels = [i for i, _ in enumerate(CHANNELS) if ref.pixel_histogram[i].sum() and cur.pixel_histogram[i].sum()]
    if not channels:
        return None
    figure = new_figure(4.2 * len(channels), 2.8)
    for k, i in enumerate(channels):
        ax = figure.add_subplot(1, len(channels), k + 1)
        for hist, label in ((ref.pixel_histogram[i], "reference"), (cur.pixel_histogram[i], "current")):
            ax.plot(np.arange(256), hist / hist.sum(), label=label)
        ax.set(title=f"pixels: {CHANNELS[i]}", xlabel="level", ylabel="share")
        ax.legend(fontsize=7)
    return _png(figure)


def property_png(result: DriftResult, name: str) -> bytes:
    """Reference and current distributions of one property, as a PNG."""
    from inspekt.figures import new_figure

    r = result.reference_profile.values[name]
    c = result.current_profile.values[name]
    r, c = r[~np.isnan(r)], c[~np.isnan(c)]
    figure = new_figure(3.4, 2.4)
    ax = figure.add_subplot(1, 1, 1)
    both = np.r_[r, c]
    bins = np.histogram_bin_edges(both, bins=30) if both.size and np.ptp(both) > 0 else 10
    for values, label in ((r, "reference"), (c, "current")):
        if values.size:
            ax.hist(values, bins=bins, density=True, alpha=0.5, label=label)
    ax.set(title=name)
    ax.legend(fontsize=7)
    return _png(figure)


def importance_png(importances: dict[str, float]) -> bytes:
    """The domain classifier's permutation importances, as a PNG bar chart."""
    from inspekt.figures import new_figure

    names = list(importances)[:8][::-1]
    figure = new_figure(4.5, 0.35 * len(names) + 0.8)
    ax = figure.add_subplot(1, 1, 1)
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="AUC lost when shuffled", title="what tells the sets apart")
    return _png(figure)


def _thumbnail(path: str) -> str | None:
    from inspekt.io import load_image

    try:
        image = load_image(path, "keep")
    except ImageLoadError:
        return None
    from PIL import Image

    thumb = Image.fromarray(image)
    thumb.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return _uri(buffer.getvalue())


def _examples(result: DriftResult, name: str) -> str:
    parts = []
    for side, profile in (("reference", result.reference_profile), ("current", result.current_profile)):
        values = profile.values[name]
        valid = np.flatnonzero(~np.isnan(values))
        order = valid[np.argsort(values[valid])]
        picks = list(order[:EXAMPLES]) + [i for i in order[-EXAMPLES:] if i not in order[:EXAMPLES]]
        cells = []
        for i in picks:
            src = _thumbnail(profile.files[i])
            if src:
                cells.append(
                    f'<figure><img src="{src}" alt=""><figcaption>{html.escape(Path(profile.files[i]).name)}'
                    f"<br>{name} {_fmt(float(values[i]))}</figcaption></figure>"
                )
        shown = "".join(cells) or "<p>(images not available here)</p>"
        parts.append(f"<h4>{side}: lowest and highest {html.escape(name)}</h4><div class=row>{shown}</div>")
    return "".join(parts)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}
.banner{padding:1em;border-radius:6px;font-size:1.4em;font-weight:bold;margin-bottom:1em}
.drift{background:#fde2e1;color:#a1150e}.ok{background:#e3f6e5;color:#176b24}.unsure{background:#fff4d6;color:#7a5300}
.red{color:#c62828}.amber{color:#b26a00}.green{color:#2e7d32}.row{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;font-size:.75em;text-align:center}.grid{display:flex;flex-wrap:wrap;gap:6px}"""


def write_html(result: DriftResult, path: str | Path) -> Path:
    """Write the self-contained HTML report (needs the result's profiles, as ``inspekt.drift`` returns it)."""
    if result.reference_profile is None or result.current_profile is None:
        raise ValueError("the HTML report needs the profiles: use the result of inspekt.check_drift()")
    rows = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{c.statistic_name} {_fmt(c.statistic)}</td><td>{_fmt(c.p_value)}</td>"
        f"<td>{_fmt(c.p_adjusted)}</td><td>{c.effect_name} {_fmt(c.effect)}</td><td>{_fmt(c.min_effect)}</td>"
        f"<td>{_fmt(c.reference)}</td><td>{_fmt(c.current)}</td>"
        f'<td class="{light(c, result.alpha)}">&#9679; {"drift" if c.drifted else ""}</td></tr>'
        for c in result.checks
    )
    sections = [
        f'<div class="banner {"drift" if result.drift else "unsure" if result.inconclusive else "ok"}">'
        f"{result.verdict}</div>",
        "".join(f"<p>{side}: {html.escape(source)}</p>" for side, source in result.sources.items()),
        f"<p>{result.n_reference} reference vs {result.n_current} current images; alpha {result.alpha} for "
        "the whole comparison (permutation p-values, Westfall-Young min-p adjusted); a check drifts when "
        "its adjusted p-value is below alpha and its effect reaches the minimum.</p>",
        "<table><tr><th>check</th><th>statistic</th><th>p</th><th>p adjusted</th><th>effect</th>"
        f"<th>min effect</th><th>reference</th><th>current</th><th></th></tr>{rows}</table>",
    ]
    pixels = histogram_png(result)
    if pixels:
        sections.append(f'<h3>Pixel histograms</h3><img src="{_uri(pixels)}" alt="pixel histograms">')
    names = [c.name for c in result.checks if c.kind == "property"]
    figures = "".join(f'<img src="{_uri(property_png(result, n))}" alt="{n}">' for n in names)
    sections.append(f"<h3>Properties</h3><div class=grid>{figures}</div>")
    domain = next((c for c in result.checks if c.kind == "domain"), None)
    if domain:
        sections.append(
            f"<h3>Domain classifier</h3><p>drift score {_fmt(domain.effect)} (AUC {_fmt(domain.statistic)},"
            f" p {_fmt(domain.p_value)}, adjusted {_fmt(domain.p_adjusted)}); drift when the score reaches "
            f"{_fmt(domain.min_effect)} and the adjusted p is at most {_fmt(result.alpha)}.</p>"
        )
        if result.importances:
            sections.append(f'<img src="{_uri(importance_png(result.importances))}" alt="importances">')
    # the drifted property with the largest effect; else the one the domain classifier found most
    # telling (drift seen only jointly); else the property that moved most
    candidates = [c.name for c in result.drifted] + [n for n, v in result.importances.items() if v > 0]
    candidates += [c.name for c in sorted((c for c in result.checks if c.kind == "property"), key=lambda c: -c.effect)]
    top = next((n for n in candidates if n in PROPERTY_NAMES), None)
    if top:
        sections.append(f"<h3>Examples at the extremes of {html.escape(top)}</h3>{_examples(result, top)}")
    rules = kl_rule_lines(result)
    if rules:
        sections.append("<h3>Fixed KL rule</h3><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in rules) + "</ul>")
    if result.notes:
        sections.append("<h3>Notes</h3><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>")
    skipped = result.skipped_reference + result.skipped_current
    if skipped:
        sections.append(
            "<h3>Skipped files</h3><ul>"
            + "".join(f"<li>{html.escape(s.path)}: {html.escape(s.reason)}</li>" for s in skipped)
            + "</ul>"
        )
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>inspekt drift report</title>"
        f"<style>{_CSS}</style></head><body><h2>inspekt drift report</h2>{''.join(sections)}</body></html>"
    )
    path = output_file(path, "drift.html")
    path.write_text(page, encoding="utf-8")
    return path
