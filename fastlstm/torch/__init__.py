"""fastlstm.torch: drop-in torch.nn.LSTM, GRU and RNN for training on the CPU, whose forward
and backward run in fastlstm's kernels (through a torch.autograd.Function).

    import fastlstm.torch

    lstm = fastlstm.torch.LSTM(32, 128, num_layers=2, batch_first=True)   # torch.nn's arguments
    output, (h_n, c_n) = lstm(x)          # tensors or a PackedSequence, as torch.nn.LSTM
    model = fastlstm.torch.replace_rnns(model)   # an existing model: same Parameter objects

- LSTM, GRU, RNN: subclasses of torch.nn.LSTM / GRU / RNN: the same constructor,
  parameters, state_dict, initialisation and results (to floating-point rounding), with
  forward and backward computed by fastlstm (see fastlstm.torch._modules for what runs
  where, the fallback to torch.nn for other devices and dtypes, dropout and threads).
- replace_rnns(model): swap every torch.nn.LSTM / GRU / RNN of a model in place.

This package imports torch; `import fastlstm` never does.
"""
try:
    import torch  # noqa: F401
except ImportError as exc:    # pragma: no cover - depends on the environment
    raise ImportError("fastlstm.torch needs PyTorch: install its CPU build, e.g. "
                      "pip install torch --index-url https://download.pytorch.org/whl/cpu") \
        from exc

from ._modules import GRU, LSTM, RNN
from ._replace import replace_rnns

__all__ = ["LSTM", "GRU", "RNN", "replace_rnns"]
