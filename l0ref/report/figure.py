"""matplotlib, imported on first use, and the bare figures every plot of the report draws on.

We never touch ``matplotlib.pyplot`` or the global backend: each figure is a bare
:class:`matplotlib.figure.Figure` on its own Agg canvas, so drawing works without a
display and leaves the caller's matplotlib state alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PLOT_EXTRA = "pip install 'l0ref[plot]'"  #: how to get the plotting dependency
DPI = 100


def matplotlib_parts():
    """``(Figure, FigureCanvasAgg, colormaps)``, imported on first use."""
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("l0ref.report draws its figures with matplotlib, which is not "
                          f"installed; install the plot extra: {PLOT_EXTRA}") from exc
    return Figure, FigureCanvasAgg, colormaps


def figure(width: float, height: float, layout: str | None = "constrained"):
    Figure, FigureCanvasAgg, _ = matplotlib_parts()
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path, palette: bool = False) -> Path:
    """Write ``fig`` as PNG.  ``palette``: quantize to 256 colours first (Pillow, which
    matplotlib requires), which makes a figure full of pooled weight images 2-3 times
    smaller at no visible cost: its colours are 16 blues, white and the greys of text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - matplotlib depends on Pillow
            palette = False
    if not palette:
        fig.savefig(path, format="png", dpi=DPI)
        return path
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(256, method=0, dither=0)  # median cut, no dither
    image.save(path, format="PNG", optimize=True)
    return path


__all__ = ["PLOT_EXTRA", "DPI", "matplotlib_parts", "figure", "save"]
