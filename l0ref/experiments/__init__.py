"""Experiments: the pipeline of a run (``pipeline.py``: train -> compact -> check -> time ->
summary), the summary it writes (``summary.py``), and the paper's Table 1 timed on this
CPU (``table1.py``, also ``l0ref bench``)."""
from . import pipeline, summary
from .pipeline import RunSpec, run

__all__ = ["pipeline", "summary", "RunSpec", "run"]
