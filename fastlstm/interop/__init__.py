"""Models in and out of other frameworks (SPEC.md section 8, layouts in section 5).

    m = fastlstm.from_torch(module_or_state_dict)   # torch.nn.LSTM / GRU / RNN / *Cell
    layers = fastlstm.from_keras(obj)               # a Keras layer, model, or file path
    nodes = fastlstm.from_onnx(path_or_model)       # {node name: layer}
    m.to_torch(); m.to_onnx(path)

Each framework is imported only when its function is called (torch, keras, onnx and h5py are
optional extras; reading a Keras file needs h5py, not Keras).
"""


def from_torch(obj, **options):
    """See fastlstm.interop.torch_models.from_torch."""
    from .torch_models import from_torch as impl

    return impl(obj, **options)


def from_keras(obj, **options):
    """See fastlstm.interop.keras_models.from_keras."""
    from .keras_models import from_keras as impl

    return impl(obj, **options)


def from_onnx(path_or_model, **options):
    """See fastlstm.interop.onnx_import.from_onnx."""
    from .onnx_import import from_onnx as impl

    return impl(path_or_model, **options)


__all__ = ["from_torch", "from_keras", "from_onnx"]
