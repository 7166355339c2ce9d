"""Gates: the families of hard concrete gates and where they act (``families.py``), and the
neuron gates of Wen et al. (``neurons.py``): sampling (Eq. 8), test-time values (Eq. 10,
11), the tied groups of a stack and the chain of their gradients to ``log_alpha``."""
from . import families
from .families import (FAMILIES, PARAMS_KEY, PER_MINIBATCH, PER_SEQUENCE, GateFamily, GateGroup, canonical_families,
                       check_log_alpha, get_family, groups, init_params, eval_gates)
from .neurons import (deterministic_gates, draw_uniforms, gate_grads, group_sizes, init_log_alpha, layer_masks,
                      live_counts, log_alpha_grads, log_alpha_grads_test, sample_gates)

__all__ = ["families", "PER_MINIBATCH", "PER_SEQUENCE", "canonical_families", "eval_gates", "FAMILIES", "PARAMS_KEY", "GateFamily", "GateGroup", "check_log_alpha", "get_family", "groups",
           "init_params", "deterministic_gates", "draw_uniforms", "gate_grads", "group_sizes", "init_log_alpha",
           "layer_masks", "live_counts", "log_alpha_grads", "log_alpha_grads_test", "sample_gates"]
