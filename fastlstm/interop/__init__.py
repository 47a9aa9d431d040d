"""Models in and out of other frameworks (SPEC.md section 8, layouts in section 5).

    m = fastlstm.from_torch(module_or_state_dict)   # torch.nn.LSTM / GRU / RNN / *Cell
    layers = fastlstm.from_keras(obj)               # [KerasRecurrent]: a Keras layer, model
                                                    # or file (.keras, .h5, .weights.h5)
    nodes = fastlstm.from_onnx(path_or_model)       # {node name: OnnxRecurrent}
    m.to_torch(); m.to_onnx(path)

One file per direction of travel: torch_models.py (both ways), keras_models.py with
keras_files.py (reading Keras files), onnx_import.py and onnx_layer.py, onnx_export.py, and
onnx_graph.py (gate layouts and constant folding shared by the two ONNX directions).

No framework is imported here: torch, keras, onnx and h5py are optional extras, imported only
by the functions that need them (reading a Keras file needs h5py, not Keras).
"""
from .keras_models import KerasRecurrent, from_keras
from .onnx_import import from_onnx
from .onnx_layer import OnnxRecurrent
from .torch_models import from_torch

__all__ = ["from_torch", "from_keras", "from_onnx", "KerasRecurrent", "OnnxRecurrent"]
