"""The time loop of the reference, written once for every cell: direction and variable
lengths (SPEC.md section 7) live here, the math of each step in lstm.py, gru.py, rnn.py.

Variable lengths by masking, the plainest way to read them: at step t, rows with
lengths[b] <= t keep their state, output 0, and pass gradients through untouched.
Reverse by a per-row flip of each row's valid part (never of the padded array), a forward
run, and the same flip of the outputs.

Shapes: x (T, B, I); h (B, H_out); c (B, H) (LSTM only); y (T, B, H_out).
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .gru import gru_cell_backward, gru_cell_forward
from .lstm import lstm_cell_backward, lstm_cell_forward
from .rnn import rnn_cell_backward, rnn_cell_forward

CELLS = ("lstm", "gru", "rnn")


def reverse_padded(a, lengths):
    """a (T, B, ...) with row b's steps 0 .. lengths[b]-1 in reverse order (padding unchanged).
    Applying it twice gives `a` back."""
    out = a.copy()
    for b, n in enumerate(lengths):
        out[:n, b] = a[:n, b][::-1]
    return out


def _step(cell, params, options, x_t, state):
    """(new state tuple, gates) of one step of `cell`."""
    if cell == "lstm":
        h, c, gates = lstm_cell_forward(x_t, *state, params["w_ih"], params["w_hh"],
                                        params.get("b_ih"), params.get("b_hh"),
                                        params.get("w_hr"), params.get("peepholes"))
        return (h, c), gates
    if cell == "gru":
        h, gates = gru_cell_forward(x_t, state[0], params["w_ih"], params["w_hh"],
                                    params.get("b_ih"), params.get("b_hh"), **options)
        return (h,), gates
    h, gates = rnn_cell_forward(x_t, state[0], params["w_ih"], params["w_hh"],
                                params.get("b_ih"), params.get("b_hh"), **options)
    return (h,), gates


def _step_backward(cell, params, options, d_state, x_t, prev, new, gates):
    """(dx_t, d_prev state tuple, grads dict) of one step of `cell`."""
    if cell == "lstm":
        dx, dh, dc, grads = lstm_cell_backward(d_state[0], d_state[1], x_t, prev[0], prev[1],
                                               new[1], gates, params["w_ih"], params["w_hh"],
                                               params.get("w_hr"), params.get("peepholes"))
        return dx, (dh, dc), grads
    backward = gru_cell_backward if cell == "gru" else rnn_cell_backward
    dx, dh, grads = backward(d_state[0], x_t, prev[0], gates, params["w_ih"], params["w_hh"],
                             **options)
    return dx, (dh,), grads


@dataclass
class SequenceTape:
    """What sequence_backward needs: the loop-order input and every state.

    x (T, B, I) in loop order (each row's valid part flipped when reverse); states: T+1
    tuples, states[t] the state before loop step t; gates (T, B, G) of every step (rows past
    their length hold the values computed and discarded there); lengths (B,).
    """

    cell: str
    params: dict
    options: dict
    x: np.ndarray
    states: list
    gates: np.ndarray
    lengths: np.ndarray
    reverse: bool


def sequence_forward(cell, params, x, state0, lengths=None, reverse=False, **options):
    """Run `cell` ("lstm", "gru" or "rnn") over x (T, B, I).

    params: w_ih, w_hh and optionally b_ih, b_hh, w_hr, peepholes (None or absent: not used);
    state0: (h0, c0) for the LSTM, (h0,) otherwise; lengths (B,) or None (all T); options:
    linear_before_reset (GRU) or nonlinearity (RNN).
    Returns y (T, B, H_out) (0 past each row's length), the final state tuple, and the tape.
    """
    T, B = x.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    xs = reverse_padded(x, lengths) if reverse else x
    xs = np.where((np.arange(T)[:, None] < lengths)[:, :, None], xs, 0)  # padding is never read
    state = tuple(s.copy() for s in state0)
    states, gates = [state], []
    y = np.zeros((T, B, state0[0].shape[1]), dtype=x.dtype)
    for t in range(T):
        new, g = _step(cell, params, options, xs[t], state)
        active = (lengths > t)[:, None]
        state = tuple(np.where(active, n, s) for n, s in zip(new, state))
        y[t] = np.where(active, state[0], 0)
        states.append(state)
        gates.append(g)
    if reverse:
        y = reverse_padded(y, lengths)
    G = {"lstm": 4, "gru": 4, "rnn": 1}[cell] * (state0[-1].shape[1] if cell == "lstm"
                                                   else state0[0].shape[1])
    gates = np.stack(gates) if T else np.zeros((0, B, G), x.dtype)
    tape = SequenceTape(cell, params, options, xs, states, gates, lengths, reverse)
    return y, state, tape


def sequence_backward(tape, dy=None, d_state_n=None):
    """Every gradient of the run that made `tape`.

    dy (T, B, H_out) or None (zeros; values past a row's length are ignored); d_state_n: a
    tuple like the final state (dh_n, dc_n for the LSTM), entries None for zeros.
    Returns a dict: x (T, B, I), w_ih, w_hh, b_ih, b_hh, w_hr, peepholes (each param's shape,
    None for params not used), and h0, c0 (c0 for the LSTM only).
    """
    xs, states, lengths = tape.x, tape.states, tape.lengths
    T, B = xs.shape[:2]
    if dy is not None and tape.reverse:
        dy = reverse_padded(dy, lengths)
    d_state = tuple(np.zeros_like(s) if d is None else np.array(d, dtype=s.dtype)
                    for s, d in zip(states[-1], d_state_n or (None,) * len(states[-1])))
    names = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "peepholes")
    grads = {n: None if tape.params.get(n) is None else np.zeros_like(tape.params[n])
             for n in names}
    grads["b_ih"] = np.zeros(tape.params["w_ih"].shape[0], xs.dtype)
    grads["b_hh"] = np.zeros(tape.params["w_hh"].shape[0], xs.dtype)
    dx = np.zeros_like(xs)
    for t in range(T - 1, -1, -1):
        active = (lengths > t)[:, None]
        d_now = list(d_state)
        if dy is not None:
            d_now[0] = d_now[0] + np.where(active, dy[t], 0)
        # inactive rows: the step did not happen, so no gradient goes through it
        d_in = tuple(np.where(active, d, 0) for d in d_now)
        dx_t, d_prev, step_grads = _step_backward(tape.cell, tape.params, tape.options, d_in,
                                                  xs[t], states[t], states[t + 1],
                                                  tape.gates[t])
        dx[t] = dx_t
        d_state = tuple(np.where(active, dp, d) for dp, d in zip(d_prev, d_now))
        for n in names:
            if grads[n] is not None and step_grads.get(n) is not None:
                grads[n] += step_grads[n]
    if tape.reverse:
        dx = reverse_padded(dx, lengths)
    grads["x"] = dx
    grads["h0"] = d_state[0]
    if tape.cell == "lstm":
        grads["c0"] = d_state[1]
    return grads
