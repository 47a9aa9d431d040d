"""Time one epoch of a small CPU training loop in PyTorch: torch.nn.LSTM against
fastlstm.torch.LSTM (imports torch).

    from fastlstm.bench.torch_train import run, format
    print(format(run(threads=2, epochs=1, repeats=3, batches=20)))

The model (the defaults; `shape=` changes them): a 2-layer LSTM with input size I = 32
and hidden size H = 128 reading time-major input (T, B, I) with T = 100 steps and B = 32
sequences, a Linear head (H -> 1) on every step's output and an MSE loss against a random
target (T, B, 1), trained with Adam (lr 1e-3). An epoch is `batches` (default 20) steps of
zero_grad, forward, loss, backward and optimizer step over fixed random batches. Both models
start from the same weights and read the same data; the epochs of the two alternate (torch,
fastlstm, torch, ...) so that drifts in the machine's speed hit both alike.

From the command line: `python -m fastlstm.bench.torch_train [threads [batches]]`.

Run alone in a fresh process, torch's steps are slower than in a process that has already
freed large arrays: glibc serves each of torch's multi-MB buffers with fresh pages from mmap
(and faults them in) until a large free raises its mmap threshold. On an AMD EPYC (Zen 5, 2
CPUs) that made torch.nn.LSTM's epoch 0.50-0.59 s alone against 0.34 s with
MALLOC_MMAP_THRESHOLD_=33554432 or after the full bench's grid, and the ratio 1.7-1.8x
against 1.1-1.2x. fastlstm keeps its tape buffers for reuse, so it is not affected. Quote the
full bench's figure (`python -m fastlstm bench`, which runs this after the grid) or set that
variable.
"""
import os
import platform
import statistics
import time

from .machine import cpu_model, isa_info

#: the benchmark's default shape and epoch length
SHAPE = dict(T=100, B=32, I=32, H=128, num_layers=2)
BATCHES = 20


def _make(rnn_class, shape, state, torch):
    """A fresh (rnn, head, optimizer) with the weights in `state`."""
    rnn = rnn_class(shape["I"], shape["H"], num_layers=shape["num_layers"])
    head = torch.nn.Linear(shape["H"], 1)
    rnn.load_state_dict(state["rnn"])
    head.load_state_dict(state["head"])
    opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-3)
    return rnn, head, opt


def _step(rnn, head, opt, x, target, torch):
    opt.zero_grad(set_to_none=True)
    y, _ = rnn(x)
    loss = torch.nn.functional.mse_loss(head(y), target)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _epoch(model, data, torch):
    rnn, head, opt = model
    t0 = time.perf_counter()
    for x, target in data:
        _step(rnn, head, opt, x, target, torch)
    return time.perf_counter() - t0


def run(threads=None, epochs=1, repeats=3, batches=None, shape=None):
    """Time `repeats` rounds of `epochs` epochs of each loop; returns a dict:

    torch_s, fastlstm_s: the median seconds per epoch; ratio: torch_s / fastlstm_s (> 1:
    fastlstm.torch is faster); times: every epoch's seconds, per loop; loss_torch,
    loss_fastlstm: each loop's losses of its first two steps (same weights and batches: the
    first forward, and the loss after one Adam step), loss_rel_diff (the larger relative
    difference) and losses_agree (loss_rel_diff < 1e-3); threads, batches, epochs, repeats,
    shape, cpu (/proc/cpuinfo's model name), cpu_count, torch, fastlstm, python versions.
    threads: torch.set_num_threads for both loops (fastlstm.torch follows torch's count);
    None keeps torch's current count (it is restored afterwards either way). shape: a dict
    overriding entries of SHAPE (T, B, I, H, num_layers).
    """
    import torch

    import fastlstm
    import fastlstm.torch as ftorch

    batches = BATCHES if batches is None else int(batches)
    shape = {**SHAPE, **(shape or {})}
    previous_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        return _run(torch, fastlstm, ftorch, shape, epochs, repeats, batches)
    finally:
        torch.set_num_threads(previous_threads)


def _run(torch, fastlstm, ftorch, shape, epochs, repeats, batches):
    n_threads = torch.get_num_threads()
    T, B = shape["T"], shape["B"]
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(T, B, shape["I"], generator=gen), torch.randn(T, B, 1, generator=gen))
            for _ in range(batches)]
    torch.manual_seed(0)
    ref = torch.nn.LSTM(shape["I"], shape["H"], num_layers=shape["num_layers"])
    state = {"rnn": ref.state_dict(), "head": torch.nn.Linear(shape["H"], 1).state_dict()}
    state = {k: {n: t.clone() for n, t in v.items()} for k, v in state.items()}

    models = {"torch": _make(torch.nn.LSTM, shape, state, torch),
              "fastlstm": _make(ftorch.LSTM, shape, state, torch)}
    # two warm-up steps per loop: the first step's loss (same weights, same batch) and the
    # loss after one Adam step (checks the gradients and the update) must agree
    losses = {}
    for name, (rnn, head, opt) in models.items():
        losses[name] = [_step(rnn, head, opt, *data[i % batches], torch) for i in range(2)]
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name in models:                                     # alternating
            times[name].append(sum(_epoch(models[name], data, torch) for _ in range(epochs))
                               / epochs)
    torch_s = statistics.median(times["torch"])
    fast_s = statistics.median(times["fastlstm"])
    rel = max(abs(a - b) / max(abs(a), 1e-30)
              for a, b in zip(losses["torch"], losses["fastlstm"]))
    return {
        "torch_s": torch_s, "fastlstm_s": fast_s, "ratio": torch_s / fast_s,
        "times": times, "loss_torch": losses["torch"], "loss_fastlstm": losses["fastlstm"],
        "loss_rel_diff": rel, "losses_agree": rel < 1e-3, "threads": n_threads,
        "batches": batches, "epochs": epochs, "repeats": repeats, "shape": shape,
        "cpu": cpu_model(), **isa_info(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "fastlstm": fastlstm.__version__, "python": platform.python_version(),
    }


def format(result):
    """A text table of run()'s result."""
    r = result
    s = r["shape"]
    lines = [
        f"Training one epoch ({r['batches']} batches): {s['num_layers']}-layer LSTM "
        f"I={s['I']} H={s['H']} B={s['B']} T={s['T']}, Linear head, MSE, Adam",
        f"CPU: {r['cpu']} ({r['cpu_count']} logical CPUs; CPU {r['cpu_isa']}, cython kernels "
        f"{r['cython_isa']}), {r['threads']} thread(s); "
        f"torch {r['torch']}, fastlstm {r['fastlstm']}, Python {r['python']}",
        "",
        f"{'implementation':<22}{'s / epoch (median)':>20}{'speed-up':>10}",
        f"{'torch.nn.LSTM':<22}{r['torch_s']:>20.3f}{1.0:>9.2f}x",
        f"{'fastlstm.torch.LSTM':<22}{r['fastlstm_s']:>20.3f}{r['ratio']:>9.2f}x",
        "",
        "losses of the first two steps: torch "
        + ", ".join(f"{v:.7g}" for v in r["loss_torch"]) + "; fastlstm "
        + ", ".join(f"{v:.7g}" for v in r["loss_fastlstm"])
        + f" (relative difference {r['loss_rel_diff']:.1e}: "
        f"{'agree' if r['losses_agree'] else 'DISAGREE'})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    args = [int(a) for a in sys.argv[1:3]]
    print(format(run(threads=args[0] if args else None,
                     batches=args[1] if len(args) > 1 else None)))
