"""The classic worked example (SPEC.md section 6): a two-step sequence through one LSTM unit,
a squared-error loss, its gradients, and one plain gradient-descent step, printed step by step.

    python -m fastlstm demo twostep [--backend numpy|cython|numba]

Sizes: I = 2 inputs, H = 1 unit, T = 2 steps, a batch of one sequence. In fastlstm's layout
(PyTorch's: gate rows i, f, g, o):

    w_ih (4, 2)   w_hh (4, 1)   b_ih (4,)   b_hh (4,) = 0   h_0 = c_0 = 0
    x_1 = [1, 2], x_2 = [0.5, 3]; targets 0.5 and 1.25
    L = Σ_t ½ (h_t − target_t)²,  so dL/dh_t = h_t − target_t

Everything is computed by fastlstm.forward and fastlstm.backward (the gates are the values the
forward pass saves on its tape), in float64, and the gradients are checked against central
finite differences of L.
"""
import numpy as np

import fastlstm

from ._common import Stopwatch, printer

#: the example's weights, rows i, f, g, o
W_IH = np.array([[0.95, 0.8], [0.7, 0.45], [0.45, 0.25], [0.6, 0.4]])
W_HH = np.array([[0.8], [0.1], [0.15], [0.25]])
B_IH = np.array([0.65, 0.15, 0.2, 0.1])
B_HH = np.zeros(4)
X = np.array([[1.0, 2.0], [0.5, 3.0]])          # (T, I): x_1, x_2
TARGETS = np.array([0.5, 1.25])                  # (T,)
LR = 0.1

#: the numbers SPEC.md gives (step 1: gates and state; step 2: state)
SPEC_NUMBERS = {"i_1": 0.96083, "f_1": 0.85195, "g_1": 0.81775, "o_1": 0.81757,
                "c_1": 0.78573, "h_1": 0.53631, "c_2": 1.51763, "h_2": 0.77198}

PARAM_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh")


def example_params():
    """A fresh copy of the example's parameters {"w_ih", "w_hh", "b_ih", "b_hh"} (float64)."""
    return {"w_ih": W_IH.copy(), "w_hh": W_HH.copy(), "b_ih": B_IH.copy(),
            "b_hh": B_HH.copy()}


def forward_loss(params, backend="numpy", return_tape=False):
    """Run the example through fastlstm.forward.

    Returns h (T,) the outputs h_1, h_2; c (T,) the cell states c_1, c_2; the loss
    L = Σ ½ (h_t − target_t)²; and with return_tape=True the tape for fastlstm.backward.
    """
    x = X[:, None, :]                                 # (T, B=1, I)
    res = fastlstm.forward(x, params["w_ih"], params["w_hh"], params["b_ih"], params["b_hh"],
                           backend=backend, return_tape=return_tape)
    y = res[0]                                        # (T, 1, 1): h_1, h_2
    h = y[:, 0, 0]
    loss = float(np.sum(0.5 * (h - TARGETS) ** 2))
    if not return_tape:
        return h, None, loss
    tape = res[2]
    c = tape.c[1:, 0, 0]             # the tape's states: c_0, c_1, c_2 (one row, in order)
    return h, c, loss, tape


def gradients(params, backend="numpy"):
    """dL/dparameter for each of w_ih, w_hh, b_ih, b_hh (a dict), with fastlstm.backward."""
    h, _, _, tape = forward_loss(params, backend, return_tape=True)
    dy = (h - TARGETS)[:, None, None]                 # dL/dh_t, shaped like y (T, 1, 1)
    g = fastlstm.backward(tape, dy)
    return {"w_ih": g.w_ih, "w_hh": g.w_hh, "b_ih": g.b_ih, "b_hh": g.b_hh}


def finite_differences(params, backend="numpy", eps=1e-6):
    """The same gradients by central differences: (L(p + eps) − L(p − eps)) / (2 eps) for
    every entry of every parameter, a dict like gradients'."""
    numeric = {}
    for name in PARAM_NAMES:
        grad = np.zeros_like(params[name])
        for index in np.ndindex(params[name].shape):
            shifted = {k: v.copy() for k, v in params.items()}
            shifted[name][index] += eps
            up = forward_loss(shifted, backend)[2]
            shifted[name][index] -= 2 * eps
            down = forward_loss(shifted, backend)[2]
            grad[index] = (up - down) / (2 * eps)
        numeric[name] = grad
    return numeric


def _fmt(a, digits=5):
    """An array as a nested list with `digits` decimals."""
    a = np.asarray(a)
    if a.ndim == 0:
        return f"{float(a):.{digits}f}"
    return "[" + ", ".join(_fmt(v, digits) for v in a) + "]"


def run(backend="numpy", out=None):
    """Run the worked example and print it step by step (to `out`, default stdout).

    Returns a dict: gates (T, 4) the gate values i, f, g, o at each step; c (T,), h (T,);
    loss; grads {"w_ih" (4, 2), "w_hh" (4, 1), "b_ih" (4,), "b_hh" (4,)}; fd_grads (the
    finite-difference ones) and fd_max_diff (the largest |analytic − numeric|); updated (the
    parameters after w ← w − 0.1 dL/dw); loss_after (L with them); seconds.
    """
    say = printer(out)
    watch = Stopwatch()
    params = example_params()
    say(f"The two-step LSTM example (SPEC.md section 6), backend {backend!r}, float64")
    say("  one unit (H = 1), two inputs (I = 2); weight rows are the gates i, f, g, o")
    for name in PARAM_NAMES:
        say(f"  {name:5} = {_fmt(params[name], 2)}")
    say("  h_0 = c_0 = 0;  x_1 = [1, 2], x_2 = [0.5, 3];  targets 0.5, 1.25")
    say()

    # ---- forward: the gates and the state at each step
    h, c, loss, tape = forward_loss(params, backend, return_tape=True)
    gates = tape.gates[:, 0, :].copy()                # (T, 4): i, f, g, o at each step
    say("Forward:  a = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh, split into a_i a_f a_g a_o")
    say("          i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)")
    say("          c_t = f c_{t-1} + i g;   h_t = o tanh(c_t)")
    say(f"  {'t':>2} {'x_t':>11} {'i':>8} {'f':>8} {'g':>8} {'o':>8} {'c_t':>8} {'h_t':>8} "
        f"{'target':>7} {'½(h-target)²':>13}")
    for t in range(len(X)):
        i, f, g, o = gates[t]
        say(f"  {t + 1:>2} {_fmt(X[t], 1):>11} {i:8.5f} {f:8.5f} {g:8.5f} {o:8.5f} "
            f"{c[t]:8.5f} {h[t]:8.5f} {TARGETS[t]:7.2f} {0.5 * (h[t] - TARGETS[t]) ** 2:13.5f}")
    say(f"  loss L = Σ_t ½ (h_t − target_t)² = {loss:.5f}")
    say()

    # ---- backward: the gradients, checked by finite differences
    grads = gradients(params, backend)
    say("Backward: dL/dh_t = h_t − target_t = " + _fmt(h - TARGETS) +
        ", back through time (SPEC.md section 1)")
    for name in PARAM_NAMES:
        say(f"  dL/d{name:5} = {_fmt(grads[name], 6)}")
    numeric = finite_differences(params, backend)
    fd_max = max(float(np.max(np.abs(grads[n] - numeric[n]))) for n in PARAM_NAMES)
    say(f"  check: central finite differences (eps = 1e-6) of L for all 20 weights and biases; "
        f"largest |analytic − numeric| = {fd_max:.1e}")
    say()

    # ---- one step of plain gradient descent
    updated = {n: params[n] - LR * grads[n] for n in PARAM_NAMES}
    loss_after = forward_loss(updated, backend)[2]
    say(f"One gradient-descent step, w ← w − {LR} · dL/dw:")
    for name in PARAM_NAMES:
        say(f"  {name:5} = {_fmt(updated[name], 6)}")
    say(f"  loss {loss:.5f} -> {loss_after:.5f}")
    seconds = watch.seconds
    say()
    say(f"twostep: done in {seconds:.2f} s")
    return {"gates": gates, "c": c.copy(), "h": h.copy(), "loss": loss, "grads": grads,
            "fd_grads": numeric, "fd_max_diff": fd_max, "updated": updated,
            "loss_after": loss_after, "seconds": seconds, "backend": backend}


def add_arguments(parser):
    parser.add_argument("--backend", default="numpy", choices=("numpy",) + tuple(
        b for b in fastlstm.available_backends() if b != "numpy"),
        help="fastlstm backend (default numpy, the reference)")


def main(args):
    run(backend=args.backend)
    return 0
