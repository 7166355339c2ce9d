"""l0ref: structured L0 pruning of recurrent networks, from scratch in NumPy.

Wen, Zhang, Bai, Xu, *Structured Pruning of Recurrent Neural Networks through
Neuron Selection*, with the hard concrete gates of Louizos, Welling, Kingma (2018).
"""
__version__ = "0.1.0"
