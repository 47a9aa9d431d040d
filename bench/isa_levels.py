"""The Cython kernels' speed per x86-64 level, side by side in one run.

Each contender is a separate Python process (two builds of fastlstm cannot share one): every
level this CPU runs of the fastlstm that `python` imports (forced with FASTLSTM_ISA), the
automatic choice, and any other builds named with --build (e.g. an older checkout built with
-march=native). The contenders take turns, round after round, so that a noisy neighbour
slows all of them alike; each one times every cell (LSTM, GRU, tanh RNN) at every shape of the
bench grid, inference and training, float32, on --threads threads. Reported: the median over
rounds of each contender's median time per call, and its ratio to the first --build (or to
the automatic level when there is none).

    python bench/isa_levels.py                                   # the levels of this build
    python bench/isa_levels.py --build native=/path/to/checkout  # against another build
    python bench/isa_levels.py --rounds 7 --json levels.json

A --build is a folder put first on PYTHONPATH (a checkout built in place, whose
fastlstm/_kernels leads to its compiled kernels) or a Python interpreter (a venv's).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

#: the grid of fastlstm's bench before issue 17 added rows (fastlstm/bench/grid.py
#: DEFAULT_SHAPES); kept so that level comparisons stay comparable with RESULTS.md's
SHAPES = ((100, 1, 32, 64), (100, 1, 128, 128), (100, 16, 128, 256), (50, 64, 256, 512),
          (200, 32, 64, 128))
CELLS = ("lstm", "gru", "rnn")
MODES = ("inference", "training")

# The timing loop run by each contender: only the public API that every build of fastlstm has.
WORKER = r"""
import json, os, sys, time
import numpy as np
import fastlstm

shapes, cells, modes, min_time, threads = json.loads(sys.argv[1])
try:
    isa = fastlstm.show_config(mode="dicts").get("cython isa") or "native build"
except Exception as exc:
    isa = f"? ({exc})"
fns = {"lstm": fastlstm.forward, "gru": fastlstm.gru_forward, "rnn": fastlstm.rnn_forward}
out = {"isa": isa, "file": fastlstm.__file__, "times": {}}
with fastlstm.threads(threads):
    for T, B, I, H in shapes:
        for cell in cells:
            G = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * H
            rng = np.random.default_rng(0)
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            w_ih = (rng.standard_normal((G, I)) * 0.1).astype(np.float32)
            w_hh = (rng.standard_normal((G, H)) * 0.1).astype(np.float32)
            b = np.zeros(G, np.float32)
            dy = np.ones((T, B, H), np.float32)
            for mode in modes:
                if mode == "inference":
                    call = lambda: fns[cell](x, w_ih, w_hh, b, b, backend="cython")
                else:
                    def call():
                        _, _, tape = fns[cell](x, w_ih, w_hh, b, b, backend="cython",
                                               return_tape=True)
                        fastlstm.backward(tape, dy)
                call()
                times, t_end = [], time.perf_counter() + min_time
                while len(times) < 5 or time.perf_counter() < t_end:
                    t0 = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t0)
                key = f"{T}x{B}x{I}x{H} {cell} {mode}"
                out["times"][key] = sorted(times)[len(times) // 2]
print("RESULT " + json.dumps(out))
"""


def contender_commands(builds, python):
    """{name: (argv prefix, environment)}: the --build entries, then this build's levels."""
    out = {}
    for spec in builds:
        name, _, where = spec.partition("=")
        env = {k: v for k, v in os.environ.items() if k not in ("FASTLSTM_ISA", "PYTHONPATH")}
        if os.path.isdir(where):
            out[name] = ([python], {**env, "PYTHONPATH": os.path.abspath(where)})
        else:
            out[name] = ([where], env)
    env = {k: v for k, v in os.environ.items() if k not in ("FASTLSTM_ISA", "PYTHONPATH")}
    auto, *levels = subprocess.run(
        [python, "-c", "from fastlstm import _isa; print(_isa.chosen_level(), *_isa.cpu_levels())"],
        capture_output=True, text=True, check=True, env=env, cwd="/").stdout.split()
    out["auto"] = ([python], env)
    for level in reversed(levels):   # the automatic choice runs once, as "auto"
        if level != auto:
            out[level] = ([python], {**env, "FASTLSTM_ISA": level})
    return out


def run(builds=(), rounds=5, min_time=0.3, threads=2, shapes=SHAPES, cells=CELLS,
        modes=MODES, python=sys.executable, log=sys.stderr):
    """{contender: {"isa", "file", "times": {case: [median per round]}}}, rounds alternated."""
    commands = contender_commands(builds, python)
    arg = json.dumps([shapes, cells, modes, min_time, threads])
    results = {}
    for r in range(rounds):
        for name, (argv, env) in commands.items():
            t0 = time.time()
            proc = subprocess.run(argv + ["-c", WORKER, arg], env=env, cwd="/",
                                  capture_output=True, text=True)
            line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode or not line:
                raise RuntimeError(f"contender {name} failed:\n{proc.stderr[-2000:]}")
            got = json.loads(line[0][7:])
            entry = results.setdefault(name, {"isa": got["isa"], "file": got["file"],
                                              "times": {}})
            for case, t in got["times"].items():
                entry["times"].setdefault(case, []).append(t)
            print(f"round {r + 1}/{rounds}: {name} ({got['isa']}) {time.time() - t0:.0f} s",
                  file=log, flush=True)
    return results


def table(results, baseline):
    """Text: per case, each contender's median ms and its ratio time(baseline) / time(it)."""
    names = list(results)
    cases = list(results[baseline]["times"])
    med = {n: {c: float(np.median(results[n]["times"][c])) for c in cases} for n in names}
    lines = [f"{'case':<34}" + "".join(f"{n:>16}" for n in names),
             f"{'':<34}" + "".join(f"{'ms (x ' + baseline + ')':>16}" if n != baseline
                                  else f"{'ms':>16}" for n in names)]
    for c in cases:
        cells = []
        for n in names:
            ms = med[n][c] * 1e3
            cells.append(f"{ms:9.2f}" + (f" {med[baseline][c] / med[n][c]:5.2f}x"
                                         if n != baseline else "       "))
        lines.append(f"{c:<34}" + "".join(f"{s:>16}" for s in cells))
    for n in names:
        if n == baseline:
            continue
        ratios = [med[baseline][c] / med[n][c] for c in cases]
        lines.append(f"{n}: time({baseline}) / time({n}) median {np.median(ratios):.3f}, "
                     f"min {min(ratios):.3f}, max {max(ratios):.3f} over {len(cases)} cases")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", action="append", default=[], metavar="NAME=PATH",
                   help="another build: a folder for PYTHONPATH or a Python interpreter")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    results = run(args.build, args.rounds, args.min_time, args.threads)
    baseline = args.build[0].partition("=")[0] if args.build else "auto"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fastlstm.bench.machine import cpu_model, isa_label

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); {isa_label()}; "
          f"{args.threads} thread(s), float32, median of {args.rounds} alternated rounds")
    for name, r in results.items():
        print(f"  {name}: {r['isa']} ({r['file']})")
    print(table(results, baseline))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "threads": args.threads, "rounds": args.rounds,
                       "baseline": baseline, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
