"""fastlstm: LSTM, GRU and plain RNN forward and backward on NumPy arrays, with results
identical to torch.nn.LSTM / GRU / RNN.

    y, (h_n, c_n) = fastlstm.forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0)      # LSTM
    y, h_n = fastlstm.gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0)
    y, h_n = fastlstm.rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, nonlinearity="tanh")
    y, ..., tape = fastlstm.forward(..., return_tape=True)   # any of the three
    grads = fastlstm.backward(tape, dy, dh_n, dc_n)          # input_grad=False: grads.x None
    m = fastlstm.LSTM(input_size, hidden_size, num_layers=2, bidirectional=True)  # GRU, RNN
    y, (h_n, c_n) = m(x)                                  # stacks as torch.nn (fastlstm.layers)
    m = fastlstm.from_torch(nn_module); fastlstm.from_keras(path); fastlstm.from_onnx(path)
    model = fastlstm.ManyToOne(m, fastlstm.Linear(H, C)); opt = fastlstm.Adam(model.modules)

Backends: a NumPy reference (fastlstm.reference), Cython and Numba kernels (fastlstm._kernels).
"""
from ._api import Gradients, Tape, backward, forward, gru_forward, rnn_forward
from ._backends import available_backends
from ._config import show_config
from ._threads import threads
from ._version import __version__
from .interop import from_keras, from_onnx, from_torch
from .layers import GRU, LSTM, RNN
from .training import (SGD, Adam, Linear, ManyToMany, ManyToOne, OneToMany, clip_grad_norm,
                       cross_entropy, fit, mse_loss, tbptt_windows)

__all__ = ["forward", "gru_forward", "rnn_forward", "backward", "available_backends",
           "show_config", "threads", "Gradients", "Tape", "LSTM", "GRU", "RNN", "from_torch", "from_keras", "from_onnx",
           "Linear", "mse_loss", "cross_entropy", "SGD", "Adam", "clip_grad_norm",
           "ManyToMany", "ManyToOne", "OneToMany", "tbptt_windows", "fit", "__version__"]
