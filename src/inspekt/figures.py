"""matplotlib figures for every report: drawn on the object-oriented ``Figure`` with the Agg canvas
(no pyplot, no global backend switch, never a window, safe in servers and threads). matplotlib is
imported inside the functions so that ``import inspekt`` stays light."""

from __future__ import annotations

DPI = 110


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path):
    """Write ``figure`` as a PNG at ``path`` (a local path or an fsspec URL: encoded in memory, one write)."""
    import io

    from inspekt import storage

    path = storage.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    path.write_bytes(buffer.getvalue())
    return path
