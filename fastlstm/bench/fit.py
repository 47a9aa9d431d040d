"""Time fastlstm.training.fit against the equivalent PyTorch training loop, on the adding
problem with the demo's model and sizes (fastlstm/demos/adding.py).

    python -m fastlstm.bench.fit [--epochs 2] [--repeats 5] [--threads 1]

    from fastlstm.bench import fit
    result = fit.run()               # dict: medians, ratio, CPU, versions, threads, ...
    print(fit.format(result))

Both sides do the same work: an LSTM (2 -> hidden, batch_first) whose last state goes into a
Linear layer (hidden -> 1), mean squared error, gradient clipping to a global norm, Adam; the
same data, the same mini-batches in the same order (fit's shuffle: a permutation per epoch from
np.random.default_rng(seed)), and the same initial weights (torch's are loaded from fastlstm's).
fastlstm runs fit(..., progress=False); PyTorch runs the usual loop (torch.nn.LSTM,
torch.nn.Linear, F.mse_loss, zero_grad, backward, clip_grad_norm_, torch.optim.Adam.step).
The two alternate, repeat after repeat, each from fresh models; the result is the median time of
each. Both run under the same thread limit (fastlstm.threads and torch.set_num_threads).
After the first repeat the two sets of trained weights are compared (max |difference|), to show
that the two loops computed the same thing (float32: they drift apart only by rounding).
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

import fastlstm

from ..demos.adding import DEFAULTS, make_data, make_model
from ..training.fit import fit
from ..training.optim import Adam
from .machine import cpu_model, isa_info


def _torch_models(model, torch):
    """torch.nn.LSTM and torch.nn.Linear holding copies of the fastlstm model's weights."""
    rnn = model.rnn.to_torch()
    head = torch.nn.Linear(model.head.in_features, model.head.out_features)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(model.head.weight))
        head.bias.copy_(torch.from_numpy(model.head.bias))
    return rnn.train(), head.train()


def _fit_fastlstm(model, x, y, cfg):
    fit(model, x, y, loss="mse", optimizer=Adam(model.modules, lr=cfg["lr"]),
        epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"],
        clip_norm=cfg["clip_norm"], progress=False)


def _fit_torch(rnn, head, x, y, cfg, torch):
    """The PyTorch loop, with fit's mini-batches (the same permutations of the same seed)."""
    F = torch.nn.functional
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n, bs = len(x), cfg["batch_size"]
    rng = np.random.default_rng(cfg["seed"])
    for _ in range(cfg["epochs"]):
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            _, (h_n, _) = rnn(xt[idx])
            loss = F.mse_loss(head(h_n[-1]), yt[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg["clip_norm"])
            opt.step()


def run(T=DEFAULTS["T"], samples=DEFAULTS["samples"], epochs=2, hidden=DEFAULTS["hidden"],
        batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"], clip_norm=DEFAULTS["clip_norm"],
        repeats=5, threads=1, seed=0):
    """Time both loops `repeats` times, alternating; returns a dict:

    fastlstm_s, torch_s (median seconds for `epochs` epochs), ratio (torch_s / fastlstm_s:
    > 1 means fit is faster), fastlstm_times, torch_times (every repeat), max_weight_diff (the
    first repeat's trained weights, fastlstm against torch), the sizes, threads, cpu,
    versions (python, numpy, torch, fastlstm), backend.
    """
    import torch

    cfg = dict(T=T, samples=samples, epochs=epochs, hidden=hidden, batch_size=batch_size,
               lr=lr, clip_norm=clip_norm, seed=seed)
    x, y = make_data(samples, T, np.random.default_rng([seed, 0]))
    old_torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = {"fastlstm": [], "torch": []}
    max_diff = None
    try:
        with fastlstm.threads(threads):
            # warm-up: first calls (allocations, torch's lazy initialisation), not timed
            warm = dict(cfg, samples=2 * batch_size, epochs=1)
            xw, yw = x[:2 * batch_size], y[:2 * batch_size]
            model = make_model("lstm", hidden, seed)
            rnn, head = _torch_models(model, torch)
            _fit_fastlstm(model, xw, yw, warm)
            _fit_torch(rnn, head, xw, yw, warm, torch)
            for r in range(repeats):
                sides = ("fastlstm", "torch") if r % 2 == 0 else ("torch", "fastlstm")
                model = make_model("lstm", hidden, seed)
                rnn, head = _torch_models(model, torch)
                for side in sides:
                    t0 = time.perf_counter()
                    if side == "fastlstm":
                        _fit_fastlstm(model, x, y, cfg)
                    else:
                        _fit_torch(rnn, head, x, y, cfg, torch)
                    times[side].append(time.perf_counter() - t0)
                if r == 0:
                    theirs = {f"rnn.{k}": v.detach().numpy() for k, v in rnn.state_dict().items()}
                    theirs.update({f"head.{k}": v.detach().numpy()
                                   for k, v in head.state_dict().items()})
                    max_diff = max(float(np.max(np.abs(v - theirs[k])))
                                   for k, v in model.state_dict().items())
    finally:
        torch.set_num_threads(old_torch_threads)
    f_med, t_med = float(np.median(times["fastlstm"])), float(np.median(times["torch"]))
    from .._backends import get_backend

    return dict(cfg, repeats=repeats, threads=threads, fastlstm_s=f_med, torch_s=t_med,
                ratio=t_med / f_med, fastlstm_times=times["fastlstm"],
                torch_times=times["torch"], max_weight_diff=max_diff,
                steps=epochs * -(-samples // batch_size), cpu=cpu_model(),
                **isa_info(), cpu_count=os.cpu_count(), backend=get_backend("auto").name,
                versions={"python": platform.python_version(), "numpy": np.__version__,
                          "torch": torch.__version__, "fastlstm": fastlstm.__version__})


def format(result):
    """A few lines of text describing a result of run()."""
    r = result
    v = r["versions"]
    return "\n".join([
        f"fastlstm.fit vs a PyTorch loop: the adding problem, LSTM(2, {r['hidden']}) + "
        f"Linear({r['hidden']}, 1), T={r['T']}, {r['samples']} sequences, batch "
        f"{r['batch_size']}, {r['epochs']} epochs ({r['steps']} Adam steps, clip "
        f"{r['clip_norm']}), median of {r['repeats']}",
        f"  fastlstm.fit ({r['backend']}): {r['fastlstm_s']:.3f} s   "
        f"({r['steps'] / r['fastlstm_s']:.0f} steps/s)",
        f"  PyTorch loop:        {r['torch_s']:.3f} s   ({r['steps'] / r['torch_s']:.0f} steps/s)",
        f"  ratio (torch / fastlstm): {r['ratio']:.2f}x   "
        f"(trained weights differ by at most {r['max_weight_diff']:.1e})",
        f"  {r['cpu']} ({r['cpu_count']} CPUs; CPU {r['cpu_isa']}, cython kernels "
        f"{r['cython_isa']}), {r['threads']} thread(s); python "
        f"{v['python']}, numpy {v['numpy']}, torch {v['torch']}, fastlstm {v['fastlstm']}",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastlstm.bench.fit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=DEFAULTS["samples"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--T", type=int, default=DEFAULTS["T"])
    args = parser.parse_args(argv)
    print(format(run(T=args.T, samples=args.samples, epochs=args.epochs, repeats=args.repeats,
                     threads=args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
