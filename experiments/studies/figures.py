"""The studies' figures: one fixed size, drawn outside pyplot.

Every study draws one figure (one idea, titled, labelled axes with units, a
legend) on `new_figure` and `report.write` saves it with `save` as
DIR/NAME.png, always `FIGURE_PX` pixels, so that the gallery's thumbnails
line up. Kept apart from the summaries and tables (`page.py`): a study's
numbers never depend on how its figure is drawn.
"""

from matplotlib import figure as mpl_figure

# Every figure is saved at this size: 8 x 5 inches at 150 dpi.
FIGURE_INCHES = (8.0, 5.0)
FIGURE_DPI = 150
FIGURE_PX = (1200, 750)  # (width, height)


def new_figure(ncols: int = 1, nrows: int = 1, **kwargs):
  """A figure of the studies' fixed size and its axes.

  A bare `Figure`, outside pyplot: `savefig` renders it with Agg whatever
  the backend, which stays the program's (a notebook's inline one).
  """
  fig = mpl_figure.Figure(figsize=FIGURE_INCHES)
  return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, path: str) -> None:
  """Saves `fig` to `path` at `FIGURE_PX` pixels, its layout tightened."""
  fig.set_size_inches(*FIGURE_INCHES)
  fig.tight_layout()
  fig.savefig(path, dpi=FIGURE_DPI)
