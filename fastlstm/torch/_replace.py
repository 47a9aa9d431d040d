"""fastlstm.torch.replace_rnns: run the recurrent layers of an existing torch model in
fastlstm, in place."""
from torch import nn

from ._modules import TWINS


def replace_rnns(model):
    """Make every torch.nn.LSTM, GRU and RNN inside `model` (`model` itself included) run in
    fastlstm, in place, and return `model`.

    Each such module object stays where it is and keeps its identity: only its class changes
    to the fastlstm.torch twin (a subclass of the torch.nn class that overrides forward
    alone). So its Parameters are the same objects (same weights, no copy; an optimizer
    created before the swap still updates them and keeps its state), and its hooks, training
    mode, device and dtype, and every other reference to it, stay as they were.

    Only modules whose type is exactly torch.nn.LSTM, GRU or RNN are swapped: subclasses of
    them (which may have a forward of their own), cells (nn.LSTMCell, ...), quantized RNNs and
    modules already swapped are left as they are. Calling it twice changes nothing more.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        twin = TWINS.get(type(module))
        if twin is not None:
            module.__class__ = twin
    return model
