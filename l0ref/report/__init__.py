"""Figures of a pruned model and its training runs, as PNG files (Wen et al. Fig. 2 and 3).

``structure.py`` draws Fig. 2 (which rows and columns survive), ``curves.py`` the live
neurons over training and Fig. 3 (perplexity against width), ``runs.py`` reads run
directories for ``l0ref report``; ``figure.py`` imports matplotlib (an optional
dependency, ``pip install 'l0ref[plot]'``) when a figure is drawn.
"""
from ..gates import live_counts
from .curves import plot_live_neurons, plot_ppl_vs_width, plot_size_target
from .figure import PLOT_EXTRA
from .runs import LAMBDA_KEYS, TEST_PPL_KEYS, make_report, read_run
from .gate_structure import constant_gate_maps, plot_constant_gates
from .structure import Kept, downsample, group_names, kept_counts, plot_structure

__all__ = ["constant_gate_maps", "plot_constant_gates", "PLOT_EXTRA", "Kept", "group_names", "live_counts", "kept_counts", "downsample", "plot_structure",
           "plot_live_neurons", "plot_ppl_vs_width", "plot_size_target", "read_run", "make_report", "TEST_PPL_KEYS", "LAMBDA_KEYS"]
