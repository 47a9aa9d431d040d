"""The classic recurrent structures (SPEC.md section 6) as ready models: a recurrent stack
`rnn` (fastlstm.LSTM / GRU / RNN) followed by a `head` (fastlstm.training.linear.Linear).

    ManyToMany(rnn, head)    a label per step:   out (T, B, C) = head(y)
    ManyToOne(rnn, head)     one label per row:  out (B, C)    = head(last valid state)
    OneToMany(rnn, head)     generation:         out (steps, B, C), each output fed back in

All three:
    out = model(x, ...)                                  # inference
    out, tape = model.forward(x, ..., return_tape=True)  # training
    dx, grads = model.backward(tape, dout)   # dout like out; grads {"rnn": ..., "head": ...}
    _, grads = model.backward(tape, dout, input_grad=False)   # dx not computed (None)
    opt = fastlstm.Adam(model.modules)       # [rnn, head]
    opt.step([grads["rnn"], grads["head"]])
    model.train(); model.eval(); model.state_dict()      # keys "rnn.<key>", "head.<key>"

Shapes: D = rnn.num_directions, H_out = rnn.output_size, C = head.out_features; x follows the
rnn's layout ((T, B, I), or (B, T, I) with rnn.batch_first). Unbatched x (T, I) works too.
"""
from collections import OrderedDict

import numpy as np

from .._validate import check_flag
from .linear import Linear


def _check_parts(rnn, head):
    """Checks shared by the three structures: the types, the sizes and the dtypes."""
    for attr in ("forward", "backward", "named_parameters", "num_directions", "output_size"):
        if not hasattr(rnn, attr):
            raise TypeError(f"rnn: expected a fastlstm.LSTM, GRU or RNN, got "
                            f"{type(rnn).__name__}")
    if not isinstance(head, Linear):
        raise TypeError(f"head: expected a fastlstm Linear, got {type(head).__name__}")
    features = rnn.num_directions * rnn.output_size
    if head.in_features != features:
        raise ValueError(f"head.in_features: expected the rnn's output size D * H_out = "
                         f"{rnn.num_directions} * {rnn.output_size} = {features}, got "
                         f"{head.in_features}")
    if np.dtype(head.dtype) != np.dtype(rnn.dtype):
        raise TypeError(f"head.dtype: expected the rnn's dtype {np.dtype(rnn.dtype)}, got "
                        f"{np.dtype(head.dtype)}")


class _Tape:
    """What a structure's backward needs from its forward call."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


class _Structure:
    """An rnn and a head, with the parts the three structures share."""

    def __init__(self, rnn, head):
        _check_parts(rnn, head)
        self.rnn = rnn
        self.head = head

    @property
    def modules(self):
        """[rnn, head]: for an optimizer, whose step takes [grads["rnn"], grads["head"]]."""
        return [self.rnn, self.head]

    @property
    def dtype(self):
        return self.rnn.dtype

    def train(self, mode=True):
        """Training mode for both parts (dropout between the rnn's layers). Returns self."""
        mode = check_flag("mode", mode)
        self.rnn.train(mode)
        self.head.train(mode)
        return self

    def eval(self):
        """Inference mode for both parts. Returns self."""
        return self.train(False)

    @property
    def training(self):
        return self.rnn.training

    def state_dict(self):
        """OrderedDict {"rnn.<key>": copy, ..., "head.<key>": copy, ...}."""
        out = OrderedDict()
        for prefix, part in (("rnn", self.rnn), ("head", self.head)):
            for key, value in part.state_dict().items():
                out[f"{prefix}.{key}"] = value
        return out

    def load_state_dict(self, state_dict):
        """Load what state_dict() returned (keys "rnn.<key>" and "head.<key>", arrays or
        torch tensors). Errors as the parts' load_state_dict (KeyError, ValueError,
        TypeError naming the key); on error nothing changes. Returns self."""
        parts = {"rnn": OrderedDict(), "head": OrderedDict()}
        for key, value in state_dict.items():
            prefix, _, rest = key.partition(".")
            if prefix not in parts or not rest:
                raise KeyError(f"state_dict: unexpected key {key!r}; expected keys starting "
                               f"with 'rnn.' or 'head.'")
            parts[prefix][rest] = value
        old_rnn = self.rnn.state_dict()
        self.rnn.load_state_dict(parts["rnn"])
        try:
            self.head.load_state_dict(parts["head"])
        except Exception:
            self.rnn.load_state_dict(old_rnn)
            raise
        return self

    def _grads(self, rnn_grads, head_grads):
        return {"rnn": rnn_grads, "head": head_grads}


class ManyToMany(_Structure):
    """A label per step: out[t, b] = head(y[t, b]), with y the rnn's output.

    forward(x, lengths=None, hx=None, return_tape=False, return_state=False):
        x (T, B, I) ((B, T, I) with rnn.batch_first) -> out (T, B, C) ((B, T, C)).
    Steps past a row's length: the rnn's y is 0 there (SPEC.md section 7), so out is the head's
    bias (as torch's Linear on a padded sequence gives). Give the same `lengths` to the loss
    (cross_entropy(out, labels, lengths), mse_loss(..., lengths=lengths)) so that these steps
    do not count; their gradient reaches nothing in the rnn anyway.
    With return_state=True the rnn's final state hx_n is returned too (for truncated BPTT):
    out, hx_n (, tape).
    backward(tape, dout) with dout like out -> (dx like x, {"rnn": grads, "head": grads}).
    """

    def __call__(self, x, lengths=None, hx=None):
        return self.forward(x, lengths=lengths, hx=hx)

    def forward(self, x, lengths=None, hx=None, return_tape=False, return_state=False):
        return_tape = check_flag("return_tape", return_tape)
        return_state = check_flag("return_state", return_state)
        if return_tape:
            y, hx_n, rnn_tape = self.rnn.forward(x, hx, lengths, return_tape=True)
            out, head_tape = self.head.forward(y, return_tape=True)
        else:
            y, hx_n = self.rnn.forward(x, hx, lengths)
            out = self.head.forward(y)
        result = (out,) + ((hx_n,) if return_state else ()) \
            + ((_Tape(rnn=rnn_tape, head=head_tape),) if return_tape else ())
        return result[0] if len(result) == 1 else result

    def backward(self, tape, dout, *, input_grad=True):
        """dout (T, B, C) like out -> (dx, {"rnn": OrderedDict, "head": OrderedDict}); dx is
        None with input_grad=False (not computed)."""
        if not isinstance(tape, _Tape) or not hasattr(tape, "head"):
            raise TypeError("tape: expected the tape from ManyToMany.forward(..., "
                            "return_tape=True)")
        dy, head_grads = self.head.backward(tape.head, dout)     # dy like y
        dx, _, rnn_grads = self.rnn.backward(tape.rnn, dy=dy, input_grad=input_grad)
        return dx, self._grads(rnn_grads, head_grads)


class ManyToOne(_Structure):
    """One label per row, from the rnn's final state: out (B, C) = head(feature),

        feature = [h_n[(L−1)·D + d] for d in range(D)] concatenated, (B, D·H_out)

    i.e. the last layer's rows of h_n: for the forward direction the state after each row's
    own last valid step (x[lengths[b] − 1, b], honouring lengths; h0 when lengths[b] = 0),
    for the backward direction of a bidirectional rnn its final state, after it has read the
    row down to step 0 (as torch with packed sequences).

    forward(x, lengths=None, hx=None, return_tape=False, return_state=False) -> out (B, C)
    (unbatched x (T, I): out (C,)); return_state=True also returns the rnn's hx_n.
    backward(tape, dout) with dout (B, C): the gradient enters the rnn through dh_n (its
    last layer's rows; dy = 0), -> (dx like x, {"rnn": grads, "head": grads}).
    """

    def __call__(self, x, lengths=None, hx=None):
        return self.forward(x, lengths=lengths, hx=hx)

    def _h_n(self, hx_n):
        return hx_n[0] if self.rnn.kind == "lstm" else hx_n

    def forward(self, x, lengths=None, hx=None, return_tape=False, return_state=False):
        return_tape = check_flag("return_tape", return_tape)
        return_state = check_flag("return_state", return_state)
        D = self.rnn.num_directions
        if return_tape:
            _, hx_n, rnn_tape = self.rnn.forward(x, hx, lengths, return_tape=True)
        else:
            _, hx_n = self.rnn.forward(x, hx, lengths)
        h_n = self._h_n(hx_n)                                      # (L*D, B, H_out)
        feature = np.concatenate(list(h_n[-D:]), axis=-1)          # (B, D*H_out)
        if return_tape:
            out, head_tape = self.head.forward(feature, return_tape=True)
        else:
            out = self.head.forward(feature)
        result = (out,) + ((hx_n,) if return_state else ())
        if return_tape:
            result += (_Tape(rnn=rnn_tape, head=head_tape, h_n_shape=h_n.shape),)
        return result[0] if len(result) == 1 else result

    def backward(self, tape, dout, *, input_grad=True):
        """dout (B, C) like out -> (dx, {"rnn": OrderedDict, "head": OrderedDict}); dx is None
        with input_grad=False (not computed)."""
        if not isinstance(tape, _Tape) or not hasattr(tape, "h_n_shape"):
            raise TypeError("tape: expected the tape from ManyToOne.forward(..., "
                            "return_tape=True)")
        D, H_out = self.rnn.num_directions, self.rnn.output_size
        dfeature, head_grads = self.head.backward(tape.head, dout)   # (B, D*H_out)
        dh_n = np.zeros(tape.h_n_shape, dtype=dfeature.dtype)       # (L*D, B, H_out)
        for d in range(D):
            dh_n[dh_n.shape[0] - D + d] = dfeature[..., d * H_out:(d + 1) * H_out]
        dhx = (dh_n, None) if self.rnn.kind == "lstm" else dh_n
        dx, _, rnn_grads = self.rnn.backward(tape.rnn, dy=None, dhx=dhx,
                                             input_grad=input_grad)
        return dx, self._grads(rnn_grads, head_grads)


class OneToMany(_Structure):
    """Generation: one input x0, then each output fed back as the next input.

        h_1 = rnn(x0, hx)          o_1 = head(h_1)
        h_t = rnn(o_{t-1}, h_{t-1})   o_t = head(h_t)      t = 2 .. steps
        out = [o_1, ..., o_steps]  (steps, B, C), or (B, steps, C) with rnn.batch_first

    x0 (B, I) (or (I,) unbatched; then out (steps, C)), with I = C: the rnn's input_size must
    equal head.out_features. The rnn runs one step per call (a bidirectional rnn cannot:
    ValueError).
    generate(x0, steps, hx=None) -> out; forward(x0, steps, hx=None, return_tape=False,
    return_state=False).
    backward(tape, dout), dout like out: back through the feedback loop, step by step from
    the last, where the gradient reaching o_t is dout_t plus what flows back from its use as
    the input of step t + 1 -> (dx0 like x0, {"rnn": grads, "head": grads}) (gradients summed
    over the steps).
    """

    def __init__(self, rnn, head):
        super().__init__(rnn, head)
        if rnn.num_directions != 1:
            raise ValueError("rnn: OneToMany runs the rnn one step at a time, a bidirectional "
                             "rnn cannot (bidirectional=True)")
        if rnn.input_size != head.out_features:
            raise ValueError(f"head.out_features: each output is the next input, so it must "
                             f"equal rnn.input_size = {rnn.input_size}; got "
                             f"{head.out_features}")

    def __call__(self, x0, steps, hx=None):
        return self.forward(x0, steps, hx=hx)

    def generate(self, x0, steps, hx=None):
        """out (steps, B, C): the generated sequence (see the class docstring)."""
        return self.forward(x0, steps, hx=hx)

    def _step_input(self, x_t):
        """x_t (B, I) or (I,) -> a one-step sequence in the rnn's layout."""
        if x_t.ndim == 2 and self.rnn.batch_first:
            return x_t[:, None, :]                  # (B, 1, I)
        return x_t[None]                            # (1, B, I) or (1, I)

    def forward(self, x0, steps, hx=None, return_tape=False, return_state=False):
        return_tape = check_flag("return_tape", return_tape)
        return_state = check_flag("return_state", return_state)
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) \
                or steps < 1:
            raise ValueError(f"steps: expected a positive integer, got {steps!r}")
        x_t = np.asarray(x0)
        if x_t.ndim not in (1, 2):
            raise ValueError(f"x0: expected shape (B, I) or (I,) unbatched, got {x_t.shape}")
        outs, tapes = [], []
        for _ in range(int(steps)):
            seq = self._step_input(x_t)
            if return_tape:
                y, hx, rnn_tape = self.rnn.forward(seq, hx, return_tape=True)
            else:
                y, hx = self.rnn.forward(seq, hx)
            h = y[:, 0] if (y.ndim == 3 and self.rnn.batch_first) else y[0]   # (B, H_out)
            if return_tape:
                x_t, head_tape = self.head.forward(h, return_tape=True)
                tapes.append((rnn_tape, head_tape))
            else:
                x_t = self.head.forward(h)
            outs.append(x_t)
        axis = 1 if (x_t.ndim == 2 and self.rnn.batch_first) else 0
        out = np.stack(outs, axis=axis)
        result = (out,) + ((hx,) if return_state else ())
        if return_tape:
            result += (_Tape(steps=tapes, time_axis=axis, x0_shape=np.shape(x0)),)
        return result[0] if len(result) == 1 else result

    def backward(self, tape, dout, *, input_grad=True):
        """dout like out -> (dx0 like x0, {"rnn": OrderedDict, "head": OrderedDict}); dx0 is
        None with input_grad=False (step 0's input gradient not computed)."""
        if not isinstance(tape, _Tape) or not hasattr(tape, "steps"):
            raise TypeError("tape: expected the tape from OneToMany.forward(..., "
                            "return_tape=True)")
        input_grad = check_flag("input_grad", input_grad)
        dout = np.asarray(dout)
        steps = len(tape.steps)
        if dout.ndim < 1 or dout.shape[tape.time_axis] != steps:
            raise ValueError(f"dout: expected the shape of out, with {steps} steps on axis "
                             f"{tape.time_axis}, got {dout.shape}")
        rnn_grads = head_grads = None
        d_next_input = None       # gradient reaching o_t from its use as input t + 1
        dhx = None                # gradient reaching the state after step t from step t + 1
        for t in reversed(range(steps)):
            rnn_tape, head_tape = tape.steps[t]
            d_o = np.take(dout, t, axis=tape.time_axis)
            if d_next_input is not None:
                d_o = d_o + d_next_input
            dh, g_head = self.head.backward(head_tape, d_o)          # (B, H_out)
            dx_seq, dhx, g_rnn = self.rnn.backward(rnn_tape, dy=self._step_input(dh),
                                                   dhx=dhx, input_grad=input_grad or t > 0)
            if dx_seq is not None:
                d_next_input = dx_seq[:, 0] if (dx_seq.ndim == 3 and self.rnn.batch_first) \
                    else dx_seq[0]
            head_grads = g_head if head_grads is None else _add(head_grads, g_head)
            rnn_grads = g_rnn if rnn_grads is None else _add(rnn_grads, g_rnn)
        dx0 = d_next_input.reshape(tape.x0_shape) if input_grad else None
        return dx0, self._grads(rnn_grads, head_grads)


def _add(total, more):
    """total[k] += more[k] for every key (total's arrays are fresh ones from a backward)."""
    for key, value in more.items():
        if value is not None:
            total[key] = total[key] + value
    return total
