"""Forward parity with ONNX Runtime (float32, max relative error 1e-4) for what torch lacks:
the reset-before GRU (ONNX linear_before_reset=0), LSTM peepholes (ONNX input P), and
sequence_lens (LSTM and GRU, forward and reverse direction), every backend.

The graphs are one ONNX node each, built by hand (opset 14). Layout conversions (SPEC.md
section 5): ONNX's GRU gates are z, r, h (fastlstm: r, z, n); ONNX's LSTM gates are i, o, f, c
(fastlstm: i, f, g, o) and its P is ordered i, o, f (fastlstm's peepholes rows: p_i, p_f, p_o);
B = [Wb, Rb]. Compared: Y (ONNX Runtime writes 0 at padded positions, as fastlstm does) and
Y_h (and Y_c). ONNX Runtime gives a length-0 row a final state of 0 rather than its initial
state (fastlstm follows PyTorch: h0, c0), so Y_h / Y_c are compared on rows of length >= 1 only
and the length-0 rows are checked to hold h0 / c0.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest

from conftest import assert_close
from family_helpers import api_args, api_forward, make_family_problem

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

TOL = 1e-4
OPSET = 14


def _reorder(a, blocks, order):
    """Rows of the stacked (n*H, ...) array `a` (or (n*H,) vector) in `order` of its blocks."""
    parts = np.split(a, blocks, axis=0)
    return np.concatenate([parts[k] for k in order], axis=0)


#: fastlstm block index for each ONNX block
GRU_ORDER = (1, 0, 2)          # ONNX z, r, h  <- fastlstm r, z, n
LSTM_ORDER = (0, 3, 1, 2)      # ONNX i, o, f, c  <- fastlstm i, f, g, o
PEEP_ORDER = (0, 2, 1)         # ONNX P i, o, f  <- fastlstm p_i, p_f, p_o


def _onnx_inputs(p):
    """(ONNX input names, arrays) for p's weights: W, R, B and (LSTM) P, with a leading D=1."""
    kind = p.variant.kind
    n, order = (4, LSTM_ORDER) if kind == "lstm" else (3, GRU_ORDER)
    G = p.params["w_ih"].shape[0]
    W = _reorder(p.params["w_ih"], n, order)[None]
    R = _reorder(p.params["w_hh"], n, order)[None]
    b_ih, b_hh = (np.zeros(G, np.float32) if b is None else b
                  for b in (p.params["b_ih"], p.params["b_hh"]))
    B = np.concatenate([_reorder(b_ih, n, order), _reorder(b_hh, n, order)])[None]
    arrays = dict(W=W, R=R, B=B)
    if p.params["peepholes"] is not None:
        arrays["P"] = _reorder(p.params["peepholes"], 3, PEEP_ORDER).reshape(1, -1)
    return arrays


def _session(p, lengths, direction):
    """An InferenceSession of one GRU / LSTM node for p's shapes, and its feed dict."""
    T, B, I, H, _ = p.dims
    lstm = p.variant.is_lstm
    feed = dict(X=p.x, **_onnx_inputs(p))
    if lengths is not None:
        feed["sequence_lens"] = np.asarray(lengths, dtype=np.int32)
    feed["initial_h"] = p.h0[None]
    if lstm:
        feed["initial_c"] = p.c0[None]
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h"]
    if lstm:
        names += ["initial_c", "P" if "P" in feed else ""]
    node_inputs = [n if n in feed else "" for n in names]
    while not node_inputs[-1]:
        node_inputs.pop()
    value_infos = [helper.make_tensor_value_info(
        n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT, list(feed[n].shape))
        for n in node_inputs if n]
    outputs = ["Y", "Y_h"] + (["Y_c"] if lstm else [])
    attrs = dict(hidden_size=H, direction=direction)
    if not lstm:
        attrs["linear_before_reset"] = int(p.variant.linear_before_reset)
    node = helper.make_node("LSTM" if lstm else "GRU", node_inputs, outputs, **attrs)
    out_infos = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, B, H])]
    out_infos += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, B, H])
                  for n in outputs[1:]]
    graph = helper.make_graph([node], "family", value_infos, out_infos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess, {n: feed[n] for n in node_inputs if n}


@dataclass(frozen=True)
class Case:
    variant: str            # "gru", "gru_reset_before", "lstm", "lstm_peep"
    lengths: Optional[tuple] = None
    reverse: bool = False
    T: int = 5
    B: int = 4
    I: int = 3
    H: int = 4
    bias: bool = True

    @property
    def id(self):
        parts = [self.variant, f"T{self.T}B{self.B}H{self.H}"]
        if self.lengths:
            parts.append("len" + "-".join(map(str, self.lengths)))
        parts.append("reverse" if self.reverse else "forward")
        if not self.bias:
            parts.append("nobias")
        return "-".join(parts)


L = (3, 0, 5, 2)   # unsorted, 0 and T among them
CASES = [
    # the reset-before GRU
    Case("gru_reset_before"),
    Case("gru_reset_before", reverse=True),
    Case("gru_reset_before", bias=False),
    Case("gru_reset_before", lengths=L),
    Case("gru_reset_before", lengths=L, reverse=True),
    Case("gru_reset_before", T=12, B=9, I=6, H=24, lengths=(12, 3, 0, 7, 12, 1, 9, 5, 11),
         reverse=True),
    # sequence_lens for the linear-before-reset GRU
    Case("gru", lengths=L),
    Case("gru", lengths=L, reverse=True),
    # peepholes
    Case("lstm_peep"),
    Case("lstm_peep", reverse=True, bias=False),
    Case("lstm_peep", lengths=L),
    Case("lstm_peep", lengths=L, reverse=True),
    Case("lstm_peep", T=12, B=9, I=6, H=24, lengths=(2, 12, 7, 0, 12, 5, 1, 11, 9)),
    # sequence_lens for the plain LSTM
    Case("lstm", lengths=L),
    Case("lstm", lengths=L, reverse=True),
    Case("lstm", lengths=(5, 5, 5, 5), reverse=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_onnxruntime_parity(case, backend):
    p = make_family_problem(case.variant, case.T, case.B, case.I, case.H, dtype=np.float32,
                            seed=8, b_ih=case.bias, b_hh=case.bias)
    direction = "reverse" if case.reverse else "forward"
    sess, feed = _session(p, case.lengths, direction)
    onnx_out = sess.run(None, feed)

    arrays, _ = api_args(p)
    y, h_n, c_n, _ = api_forward(p.variant, arrays, backend, lengths=case.lengths,
                                 reverse=case.reverse, return_tape=False)
    assert_close(y, onnx_out[0][:, 0], TOL, "Y")
    lengths = np.full(case.B, case.T) if case.lengths is None else np.array(case.lengths)
    if case.lengths is not None:
        pad = np.arange(case.T)[:, None] >= lengths
        assert np.all(onnx_out[0][:, 0][pad] == 0) and np.all(y[pad] == 0)
    rows = lengths > 0
    states = [("Y_h", h_n, p.h0)] + ([("Y_c", c_n, p.c0)] if p.variant.is_lstm else [])
    for (name, got, initial), theirs in zip(states, onnx_out[1:]):
        assert_close(got[rows], theirs[0][rows], TOL, name)
        np.testing.assert_array_equal(got[~rows], initial[~rows])


def test_onnx_conversion_is_not_the_identity():
    """Guard: without the gate reordering the comparison fails (the orders really differ)."""
    p = make_family_problem("lstm_peep", 5, 4, 3, 4, dtype=np.float32, seed=8)
    sess, feed = _session(p, None, "forward")
    feed["P"] = p.params["peepholes"].reshape(1, -1)      # fastlstm's p_i, p_f, p_o as is
    y_wrong = sess.run(None, feed)[0][:, 0]
    arrays, _ = api_args(p)
    y, *_ = api_forward(p.variant, arrays, "numpy", return_tape=False)
    with pytest.raises(AssertionError):
        assert_close(y, y_wrong, TOL, "Y")
