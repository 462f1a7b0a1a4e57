"""One figure style for the whole book, and the few plots every chapter draws.

Figures are built on ``matplotlib.figure.Figure`` through pyplot, so they show in notebooks and
in the built book alike. Every figure has a title and labelled axes; :func:`label` makes that one
call, and adds a legend when more than one line is labelled.

Derived in: Preface, *Notation* (figures follow the same conventions as the text).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "COLORS",
    "enable_inline",
    "heatmap",
    "image_grid",
    "label",
    "subplots",
    "use_book_style",
]

# Okabe and Ito's palette: distinguishable with the common colour-vision deficiencies.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def enable_inline() -> bool:
    """In a Jupyter or Colab kernel, make figures display as images (``%matplotlib inline``).

    Figures that ``dlbook`` displays itself (live loss plots, interactive figures) are plain
    ``Figure`` objects; IPython shows them as images only once the inline backend's formatters are
    registered. Returns whether a kernel was found. Does nothing in a plain Python script.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    shell.run_line_magic("matplotlib", "inline")
    return True


def use_book_style() -> None:
    """Set the book's matplotlib defaults (sizes, grid, palette, no top/right spines)."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "figure.constrained_layout.use": True,
            "font.size": 10.5,
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "axes.labelsize": 10.5,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": mpl.cycler(color=list(COLORS)),
            "legend.frameon": False,
            "lines.linewidth": 1.8,
            "image.cmap": "viridis",
        }
    )


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float | None = None,
    height: float | None = None,
    **kwargs,
) -> tuple[Figure, Axes | np.ndarray]:
    """``plt.subplots`` with a size that grows with the grid (3.6 x 3.2 inches per panel)."""
    if nrows < 1 or ncols < 1:
        raise ValueError(f"nrows and ncols must be >= 1, got {nrows} x {ncols}")
    size = (width or max(6.4, 3.6 * ncols), height or max(3.6, 3.2 * nrows))
    return plt.subplots(nrows, ncols, figsize=size, **kwargs)


def label(ax: Axes, title: str, xlabel: str, ylabel: str, *, legend: bool | None = None) -> Axes:
    """Title and axis labels in one call; a legend when two or more artists carry labels.

    Args:
        legend: force the legend on (True) or off (False); by default it is drawn when at least
            two artists have labels that do not start with an underscore.
    """
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    labelled = [h for h in ax.get_legend_handles_labels()[1] if not h.startswith("_")]
    if legend or (legend is None and len(labelled) >= 2):
        ax.legend()
    return ax


def heatmap(
    ax: Axes,
    values: np.ndarray,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xticklabels: Sequence[str] | None = None,
    yticklabels: Sequence[str] | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = False,
    fmt: str = "{:.2f}",
) -> Axes:
    """Draw a 2-D array ``values`` of shape ``(rows, cols)`` as a labelled heatmap.

    Row ``i`` is drawn at the top for ``i = 0`` (matrix convention), as attention maps and
    gridworlds are read.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"heatmap expects a 2-D array, got shape {values.shape}")
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.grid(False)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)), labels=list(xticklabels))
    if yticklabels is not None:
        ax.set_yticks(range(len(yticklabels)), labels=list(yticklabels))
    if annotate:
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        mid = (lo + hi) / 2
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j,
                i,
                fmt.format(v),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v < mid else "black",
            )
    if colorbar:
        ax.figure.colorbar(im, ax=ax)
    return label(ax, title, xlabel, ylabel, legend=False)


def image_grid(
    images: np.ndarray,
    *,
    title: str,
    nrow: int | None = None,
    labels: Sequence[str] | None = None,
    cmap: str = "gray_r",
    size: float = 0.9,
) -> Figure:
    """Show ``images`` of shape ``(N, H, W)`` (grey) or ``(N, H, W, 3)`` (RGB) in a grid.

    Args:
        nrow: images per row (default: about ``sqrt(N)``).
        labels: one caption per image, drawn under it.
        size: inches per image.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(
            f"image_grid expects (N, H, W) or (N, H, W, 3) with N >= 1, got {images.shape}"
        )
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"got {len(labels)} labels for {len(images)} images")
    n = len(images)
    ncol = nrow or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrows, ncol, figsize=(size * ncol, size * nrows + 0.5), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], cmap=cmap if images.ndim == 3 else None, interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[k]), fontsize=8, fontweight="normal")
    fig.suptitle(title, fontweight="bold")
    return fig
