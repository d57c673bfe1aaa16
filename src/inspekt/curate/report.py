"""An ``IssueReport`` as one self-contained HTML page (thumbnails inline as base64, no external file,
script or font: it opens offline and can be mailed) and as console lines. Every name is escaped."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from inspekt.curate.find import IssueReport
from inspekt.curate.issues import DataIssue
from inspekt.errors import ImageLoadError
from inspekt.io import output_file, write_file
from inspekt.progress import step

THUMB = 160  # thumbnail side in pixels
MAX_SHOWN = 500  # issues drawn with a thumbnail; the rest are listed in the CSV

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
img{max-width:160px;max-height:160px;image-rendering:pixelated}.kind{font-weight:bold}
.label{color:#b00}.mask{color:#a50}.duplicate{color:#05a}.outlier{color:#606}.split{color:#070}
.note{background:#fff4d6;padding:.5em;margin:.3em 0}small{color:#666}
"""


def thumbnail(path: str, mask: str | None = None) -> str | None:
    """A data: URI of a small JPEG of the image (with ``mask`` outlined over it), or None when unreadable."""
    from PIL import Image

    from inspekt.draw import overlay_mask
    from inspekt.io import load_image

    try:
        image = load_image(path, mode="RGB")
        if mask is not None:
            drawn = load_image(mask, mode="L")
            if drawn.shape == image.shape[:2]:
                image = overlay_mask(image, (drawn >= 128).astype("uint8"), opacity=0.3)
    except ImageLoadError:
        return None
    thumb = Image.fromarray(image)
    thumb.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _row(issue: DataIssue, masks: dict[str, str], picture: bool) -> str:
    e = html.escape
    uri = thumbnail(issue.path, masks.get(issue.path)) if picture else None
    cell = f'<img src="{uri}" alt="">' if uri else "<small>(no thumbnail)</small>"
    change = f"{e(issue.label or '')} &rarr; {e(issue.suggested)}" if issue.suggested else e(issue.label or "")
    return (
        f"<tr><td>{issue.rank}</td><td>{cell}</td><td class='kind {e(issue.kind)}'>{e(issue.kind)}</td>"
        f"<td>{issue.score:.3f}</td><td>{change}</td><td>{e(issue.detail)}<br><small>{e(issue.path)}"
        f"{' · ' + e(issue.split) if issue.split else ''}</small></td></tr>"
    )


def render_html(report: IssueReport, masks: dict[str, str] | None = None) -> str:
    """The report as one HTML page.

    Args:
        report: what ``find_issues`` found.
        masks: image path -> its mask file, drawn over the thumbnails of mask issues.
    """
    e, masks = html.escape, masks or {}
    mask_of = {i.path: masks[i.path] for i in report.issues if i.kind == "mask" and i.path in masks}
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n) or "none"
    parts = [
        f"<h2>inspekt data issues: {e(report.root)}</h2>",
        f"<p>{report.n_images} images, layout {e(report.layout)}; judged by {e(report.model)}. "
        f"Issues: {len(report.issues)} ({e(counts)}); {len(report.skipped)} file(s) skipped; "
        f"{report.seconds:.0f} s.</p>",
    ]
    if report.summary:
        parts.append("<p><small>" + e(", ".join(f"{k} {v}" for k, v in report.summary.items())) + "</small></p>")
    parts += [f"<div class=note>{e(n)}</div>" for n in report.notes]
    with step("drawing thumbnails", min(len(report.issues), MAX_SHOWN)) as advance:
        rows = []
        for issue in report.issues:
            rows.append(_row(issue, mask_of, issue.rank <= MAX_SHOWN))
            advance()
    parts.append(
        "<table><tr><th>rank</th><th>image</th><th>kind</th><th>score</th><th>label</th><th>why</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    if len(report.issues) > MAX_SHOWN:
        parts.append(f"<p><small>thumbnails for the first {MAX_SHOWN} issues only</small></p>")
    if report.skipped:
        items = "".join(f"<li>{e(s.path)}: {e(s.reason)}</li>" for s in report.skipped)
        parts.append(f"<h3>Skipped files ({len(report.skipped)})</h3><ul>{items}</ul>")
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>inspekt data issues</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_html(report: IssueReport, path: str | Path, masks: dict[str, str] | None = None) -> Path:
    """Write ``render_html`` to the file ``path``, atomically (a folder is refused, naming a file to give)."""
    target = output_file(path, "issues.html", option="--html")
    return write_file(target, render_html(report, masks).encode("utf-8"))
