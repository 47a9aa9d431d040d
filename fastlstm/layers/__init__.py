"""Layers as torch.nn: LSTM, GRU and RNN stacks (layers, directions, dropout) in pure Python
above the single-layer functions fastlstm.forward / gru_forward / rnn_forward / backward.

- _params.py: parameter names, shapes and initialisation; state_dict checks.
- _stack.py: forward and backward through the layers and directions of a stack.
- modules.py: the public classes.
"""
from .modules import GRU, LSTM, RNN

__all__ = ["LSTM", "GRU", "RNN"]
