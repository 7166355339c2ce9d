"""Models: the stack of gated recurrent layers (``stack.py``) and the language model of Wen
et al. section 4.1 built on it (``language.py``) and the document classifier of Lobacheva et al.
(``classifier.py``); ``config.py`` says what a model is,
``roles.py`` which of its arrays are weights, biases and gates."""
from . import classifier, language, roles, stack
from .config import ModelConfig
from .language import (backward, check_params, check_tokens, cross_entropy, forward, inference_gates, init_params,
                       layer_blocks, log_probs, log_softmax, neuron_log_alpha, eval_gates)
from .roles import n_params

__all__ = ["ModelConfig", "classifier", "language", "roles", "stack", "backward", "check_params", "check_tokens", "cross_entropy",
           "forward", "inference_gates", "init_params", "layer_blocks", "log_probs", "log_softmax",
           "neuron_log_alpha", "n_params", "eval_gates"]
