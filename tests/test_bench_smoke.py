"""Smoke tests of `python -m fastlstm bench` (fastlstm.bench) and of its correctness gate
(fastlstm.bench.peers.check_contender): tiny shapes, a few milliseconds of timing; the parts
that need torch or onnxruntime only where they are installed. Also: the modules of
fastlstm.bench import one another one way only."""
import ast
import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm.bench import cli, grid, machine, peers, timing

BENCH_DIR = pathlib.Path(fastlstm.__file__).parent / "bench"
INSTALLED_PEERS = [p for p in peers.PEERS if peers.peer_available(p)[0]]


def test_bench_smoke(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench.json"
    rc = cli.main(["--shapes", "12x5x3x4", "12x1x3x4", "--lengths-shapes", "12x5x3x4",
                   "--min-time", "0.01", "--repeats", "3", "--peak-size", "128", "--threads",
                   "1", "--stream-sizes", "6", "--no-stacks", "--no-training", "--no-progress",
                   "--no-denormals", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fastlstm bench" in text and "variable lengths:" in text and "stream steps" in text
    assert "threads: whole-sequence inference" in text and "per call: the fixed cost" in text
    data = json.loads(out.read_text())
    # the threads table ran the B=1 shape only; the per-call table every installed row
    assert {r["shape"] for r in data["scaling"]["rows"]} == {"12x1x3x4"}
    assert len(data["per_call"]["rows"]) == 3 + len(INSTALLED_PEERS)
    streams = {(r["cell"], r["contender"]) for r in data["streams"]}
    for backend in fastlstm.available_backends():   # the stream table: LSTM and GRU steps
        assert {("lstm", backend), ("gru", backend)} <= streams
    assert all(r["median_s"] > 0 and r["max_rel_error"] <= peers.RTOL and r["I"] == 6
               for r in data["streams"])
    rows = data["rows"]
    got = {(r["contender"], r["mode"]) for r in rows}
    for backend in fastlstm.available_backends():
        assert {(backend, "inference"), (backend, "training")} <= got
        for kind in ("lstm", "gru", "rnn", "lstm+len"):  # every cell, and the lengths case
            cell, lengths = kind.split("+")[0], kind.endswith("+len")
            assert [r for r in rows if r["contender"] == backend and r["cell"] == cell
                    and r["lengths"] == lengths and r["mode"] == "training"], kind
    for r in rows:  # lengths rows count only the work of sum(lengths) rows
        if r["lengths"]:
            assert 0 < r["work_fraction"] < 1
            assert (r["vs_padded"] is not None) == (r["family"] == "fastlstm")
        else:
            assert r["work_fraction"] == 1 and r["vs_padded"] is None
    assert all(r["median_s"] > 0 and r["gflops"] > 0 and r["max_rel_error"] <= peers.RTOL
               for r in rows)
    assert data["meta"]["matmul"]["gflops"] > 0
    for peer in INSTALLED_PEERS:  # the peer parts only where torch / onnxruntime import
        assert (peer, "inference") in got
        for r in rows:
            if r["family"] == "fastlstm" and (peer, r["mode"]) in got:
                assert r["speedup"][peer] > 0

    # A contender computing the wrong thing must be refused before any timing. Gates in the
    # wrong order (ONNX's i,o,f,c fed where PyTorch's i,f,g,o is expected) is the classic slip.
    problem = peers.make_problem(5, 2, 3, 4)
    ref = peers.reference(problem)
    swapped = dataclasses.replace(
        problem, **{k: peers.torch_to_onnx_gates(getattr(problem, k))
                    for k in ("w_ih", "w_hh", "b_ih", "b_hh")})
    for name in ["numpy"] + INSTALLED_PEERS:
        with pytest.raises(peers.MismatchError, match=name):
            peers.check_contender(peers.build(name, swapped), ref)
    # the same for the GRU (ONNX's z, r, h fed where PyTorch's r, z, n is expected), with lengths
    problem = peers.make_problem(6, 3, 3, 4, cell="gru", lengths=True)
    ref = peers.reference(problem)
    swapped = dataclasses.replace(
        problem, **{k: peers.torch_to_onnx_gates(getattr(problem, k), "gru")
                    for k in ("w_ih", "w_hh", "b_ih", "b_hh")})
    for name in ["numpy"] + INSTALLED_PEERS:
        assert peers.check_contender(peers.build(name, problem), ref)["y"] <= peers.RTOL
        with pytest.raises(peers.MismatchError, match=name):
            peers.check_contender(peers.build(name, swapped), ref)
    problem = peers.make_problem(5, 2, 3, 4)
    ref = peers.reference(problem)
    # only a gradient wrong: training is checked too
    good = peers.build("numpy", problem)
    bad_grad = dataclasses.replace(
        good, grads_of=lambda g: {**good.grads_of(g), "w_hh": good.grads_of(g)["w_hh"] * 1.01})
    assert peers.check_contender(good, ref)["grad w_hh"] == 0.0
    with pytest.raises(peers.MismatchError, match="grad w_hh"):
        peers.check_contender(bad_grad, ref)

    # ... and the command line stops with an error instead of printing a table
    def wrong_builder(problem_, threads=1):
        c = peers.build_fastlstm("numpy", problem_, threads)
        return dataclasses.replace(c, y_of=lambda y: np.asarray(y[0]) * 1.001)

    monkeypatch.setitem(peers.CONTENDERS, "numpy", wrong_builder)
    rc = cli.main(["--shapes", "5x2x3x4", "--contenders", "numpy", "--min-time", "0",
                   "--peak-size", "64", "--no-progress", "--stream-sizes", "--no-stacks",
                   "--no-training"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "disagrees with fastlstm's NumPy reference" in captured.err
    assert "median ms" not in captured.out


def test_stacks_table_smoke():
    """The layer-stack table on tiny stacks: every contender checked against the NumPy backend
    (y, and every weight gradient in training) and timed; ratios for fastlstm's rows."""
    from fastlstm.bench import stacks

    names = list(peers.available_contenders())
    tiny = (("lstm tiny", "lstm", 2, True, (4, 2, 3, 5)),
            ("gru tiny", "gru", 2, False, (4, 2, 3, 5)))
    rows = stacks.run_stacks(names, 1, min_time=0.0, repeats=1, stacks=tiny)
    got = {(r.model, r.mode, r.contender) for r in rows}
    for backend in fastlstm.available_backends():
        assert {("lstm tiny", "training", backend), ("gru tiny", "inference", backend)} <= got
    assert all(r.median_s > 0 and r.max_rel_error <= peers.RTOL for r in rows)
    for r in rows:
        if r.contender in fastlstm.available_backends() and r.mode == "inference":
            assert set(r.speedup) == set(INSTALLED_PEERS)
    assert "layer stacks" in stacks.format_stacks(rows, 1)


def test_fit_table_smoke():
    """fastlstm.fit against the PyTorch loop on a tiny adding problem: both loops train the
    same weights to the same result, and the report names the CPU and both times."""
    pytest.importorskip("torch")
    from fastlstm.bench import fit

    result = fit.run(T=10, samples=64, epochs=1, repeats=1, hidden=8)
    assert result["fastlstm_s"] > 0 and result["torch_s"] > 0
    assert result["ratio"] == pytest.approx(result["torch_s"] / result["fastlstm_s"])
    assert result["max_weight_diff"] < 1e-4
    text = fit.format(result)
    assert result["cpu"] in text and "ratio" in text


def test_measure_rotation_blocks_and_contexts():
    """Blocks of `calls` calls take turns, each inside its own context (entered around the
    warm-up and every block, with one untimed call after each entry); times are per call."""
    log = []

    class Context:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            log.append(("enter", self.name))

        def __exit__(self, *exc):
            log.append(("exit", self.name))

    fns = [lambda: log.append("a"), lambda: log.append("b")]
    got = timing.measure_rotation(fns, min_time=0.0, repeats=2, warmup=1, calls=[3, 1],
                                  contexts=[lambda: Context("A"), lambda: Context("B")])
    assert [len(t.times) for t in got] == [2, 2] and all(t.median >= 0 for t in got)
    block_a = [("enter", "A"), "a", "a", "a", "a", ("exit", "A")]   # 1 untimed + 3 timed
    block_b = [("enter", "B"), "b", "b", ("exit", "B")]
    warm = [("enter", "A"), "a", ("exit", "A"), ("enter", "B"), "b", ("exit", "B")]
    assert log == warm + (block_a + block_b) * 2
    assert timing.measure_rotation([], min_time=10.0) == []
    with pytest.raises(ValueError, match="calls"):
        timing.measure_rotation(fns, calls=[1])


def test_scaling_table_smoke():
    """The threads table on a tiny B=1 case: cython, onnxruntime and torch (those installed)
    checked and timed at 1 and 2 threads, the ratio time(1) / time(2)."""
    from fastlstm.bench import scaling

    assert scaling.DEFAULT_SCALING_SHAPES == tuple(s for s in grid.DEFAULT_SHAPES if s[1] == 1)
    assert {(100, 1, 256, 256), (100, 1, 512, 512)} <= set(scaling.DEFAULT_SCALING_SHAPES)
    assert (100, 4, 256, 256) in grid.DEFAULT_SHAPES
    expected = [n for n in scaling.SCALING_CONTENDERS if n in peers.available_contenders()]
    if not expected:
        pytest.skip("none of cython, onnxruntime, torch is available here")
    missing = set(scaling.SCALING_CONTENDERS) - set(expected)
    result = scaling.run_scaling(list(peers.available_contenders()), [(6, 1, 3, 4)],
                                 ("lstm", "gru"), min_time=0.0, repeats=2)
    rows = result["rows"]
    assert [(r.cell, r.contender) for r in rows] == [(c, n) for c in ("lstm", "gru")
                                                     for n in expected]
    for r in rows:
        assert set(r.median_s) == {1, 2} and min(r.median_s.values()) > 0
        assert r.ratio == pytest.approx(r.median_s[1] / r.median_s[2])
        assert r.max_rel_error <= peers.RTOL
    text = scaling.format_scaling(result)
    assert "threads:" in text and machine.cpu_model() in text and machine.isa_label() in text
    first = json.loads(json.dumps(scaling.to_json(result)))["rows"][0]
    assert first["shape"] == "6x1x3x4" and set(first["median_s"]) == {"1", "2"}
    if missing:
        pytest.skip(f"not installed, not run: {', '.join(sorted(missing))}")


def test_per_call_table_smoke():
    """The per-call table with short blocks: fastlstm's layer call, forward and stream step,
    ONNX Runtime's session.run and torch's call (those installed), checked and timed; each
    fastlstm row's ratio to session.run."""
    from fastlstm.bench import per_call

    names = list(peers.available_contenders())
    result = per_call.run_per_call(names, min_time=0.0, repeats=2, calls=5)
    rows = {r.name: r for r in result["rows"]}
    expected = list(per_call.FASTLSTM_ROWS)
    expected += [per_call.ORT_ROW] if "onnxruntime" in names else []
    expected += [per_call.TORCH_ROW] if "torch" in names else []
    assert list(rows) == expected
    for r in rows.values():
        assert r.median_s > 0 and r.max_rel_error <= peers.RTOL
        has_ratio = "onnxruntime" in names and r.name in per_call.FASTLSTM_ROWS
        assert (r.vs_ort is not None) == has_ratio
        if has_ratio:
            assert r.vs_ort == pytest.approx(rows[per_call.ORT_ROW].median_s / r.median_s)
    assert result["meta"]["shape"] == "1x1x32x64" and result["meta"]["threads"] == 1
    text = per_call.format_per_call(result)
    assert "per call:" in text and "stream step" in text and machine.cpu_model() in text
    assert json.loads(json.dumps(per_call.to_json(result)))["rows"][0]["row"] == "layer call"
    missing = [p for p in peers.PEERS if p not in names]
    if missing:
        pytest.skip(f"not installed, rows not run: {', '.join(missing)}")


def _package_imports():
    """{module: set of the fastlstm.bench modules it imports}, from every import statement of
    every file of fastlstm/bench (those inside functions too), relative ones resolved."""
    modules = {("fastlstm.bench" if p.stem == "__init__" else f"fastlstm.bench.{p.stem}"): p
               for p in BENCH_DIR.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = "fastlstm.bench"
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0]
                    base = f"{parent}.{base}" if base else parent
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # submodules
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_package_imports_go_one_way():
    """No module of fastlstm.bench imports one that imports it back, directly or through
    others, not even inside a function; and importing the command line loads no peer."""
    graph = _package_imports()
    assert {"fastlstm.bench.cli", "fastlstm.bench.grid", "fastlstm.bench.peers"} <= set(graph)
    assert "fastlstm.bench.grid" in graph["fastlstm.bench.cli"]     # the parser sees imports
    state = {}

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import circle in fastlstm.bench: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    code = ("import sys, fastlstm.bench, fastlstm.bench.cli; "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)



def test_denormals_table_smoke():
    """The denormals table at a tiny shape: a row per contender and mode, the subnormal
    problem really subnormal, and its text and JSON."""
    from fastlstm.bench import denormals

    problem = denormals.subnormal_problem(peers.make_problem(5, 2, 3, 4))
    assert np.all(np.abs(problem.x) < 1.18e-38) and np.all(problem.b_ih == 0)
    names = [n for n in ("cython", "numpy", "onnxruntime") if n in peers.available_contenders()]
    result = denormals.run_denormals(names, 1, shape=(5, 2, 3, 4), min_time=0.0, repeats=2,
                                     warmup=1)
    expected = [(n, m) for n in names for m in peers.MODES
                if m == "inference" or n != "onnxruntime"]
    assert [(r.contender, r.mode) for r in result["rows"]] == expected
    assert all(r.normal_s > 0 and r.subnormal_s > 0 for r in result["rows"])
    assert "denormals: LSTM 5x2x3x4" in denormals.format_denormals(result)
    assert json.loads(json.dumps(denormals.to_json(result)))["rows"][0]["ratio"] > 0


def test_quantized_table_smoke(tmp_path, capsys):
    """The reduced-precision table (`--quantized`) at tiny shapes: fastlstm float32, int8 and
    bfloat16 and the installed peers' int8 and float32 LSTM / GRU timed, each with its error
    against fastlstm float32 (int8 below 0.1, the float32 peers at float32 tolerance), the
    speed-ups, and the machine facts in the JSON; ONNX Runtime has no int8 GRU ("-")."""
    from fastlstm.bench import quantized

    out = tmp_path / "q.json"
    rc = cli.main(["--quantized", "--quantized-shapes", "6x1x5x8", "6x3x5x8",
                   "--quantized-gru-shapes", "6x1x5x8", "--threads", "1", "--min-time", "0.005",
                   "--repeats", "2", "--no-progress", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "reduced precision: whole-sequence inference" in text and "dot-product paths" in text
    assert "fastlstm bench," not in text            # only the selected table ran
    data = json.loads(out.read_text())
    assert set(data) == {"quantized"}
    meta, rows = data["quantized"]["meta"], data["quantized"]["rows"]
    assert meta["threads"] == 1 and meta["machine"]["cpu"] == machine.cpu_model()
    assert {"cpu_isa", "cython_isa", "dot_products", "env"} <= set(meta)
    if "cython" in fastlstm.available_backends():
        assert set(meta["dot_products"]) == {"int8", "bfloat16"}
    installed, _ = quantized.available_peers()
    expected = [n for n in quantized.QUANTIZED_CONTENDERS
                if quantized._NEEDS.get(n) in (None, *installed)]
    cases = [("lstm", "6x1x5x8"), ("lstm", "6x3x5x8"), ("gru", "6x1x5x8")]
    assert [(r["cell"], r["shape"], r["contender"]) for r in rows] == \
        [c + (n,) for c in cases for n in expected]
    for r in rows:
        if r["cell"] == "gru" and r["contender"] == "ort int8":
            assert r["median_s"] is None and "no int8 GRU" in r["note"]
            continue
        assert r["median_s"] > 0
        assert np.isfinite(r["max_abs_error"]) and np.isfinite(r["max_rel_error"])
        if r["contender"].endswith("f32"):
            assert r["max_rel_error"] <= peers.RTOL
        elif r["contender"].startswith("fastlstm"):
            assert 0 < r["max_abs_error"] < 0.1, r
        else:
            # a peer's int8 error is its own: ONNX Runtime's AVX2 kernel (no VNNI) adds
            # int16 pairs that can saturate, and gave 0.12 here on a Zen 3 (|y| <= 1)
            assert 0 < r["max_abs_error"] < 2.0, r
    for s in data["quantized"]["speedups"]:
        assert s["int8_vs_f32"] > 0 and s["bf16_vs_f32"] > 0
        assert (s["int8_vs_ort_int8"] is not None) == ("onnxruntime" in installed
                                                       and s["cell"] == "lstm")
        assert (s["int8_vs_torch_int8"] is not None) == ("torch" in installed)
    missing = [p for p in peers.PEERS if p not in installed]
    if missing:
        assert all(f"skipped: {p}" in text for p in missing)
        pytest.skip(f"not installed, rows not run: {', '.join(missing)}")


def test_quantized_accuracy_smoke():
    """The accuracy report at a tiny shape, every cell, without the demos and silero: int8 and
    bfloat16 errors finite and small, the peers' int8 where they exist, and its text."""
    from fastlstm.bench import quantized

    result = quantized.run_accuracy([(6, 2, 5, 8)], demos=False, silero=False, threads=1)
    rows = {r.variant: r for r in result["rows"]}
    assert list(rows) == list(quantized.ACCURACY_VARIANTS)
    installed, _ = quantized.available_peers()
    for name, r in rows.items():
        assert 0 < r.int8_abs < 0.1 and 0 < r.bf16_abs < 0.05, name
        assert np.isfinite(r.int8_rel) and np.isfinite(r.bf16_rel)
        assert (r.ort_int8_abs is not None) == (name == "lstm" and "onnxruntime" in installed)
        assert (r.torch_int8_abs is not None) == (name in ("lstm", "gru")
                                                  and "torch" in installed)
        if r.ort_int8_abs is not None:
            assert r.vs_ort == pytest.approx(r.int8_abs / r.ort_int8_abs)
    text = quantized.format_accuracy(result)
    assert "reduced-precision accuracy" in text and "lstm+proj" in text and "rnn-relu" in text
    data = json.loads(json.dumps(quantized.accuracy_to_json(result)))
    assert data["demos"] is None and data["silero"] is None
    assert data["rows"][0]["shape"] == "6x2x5x8"


def test_int8_weights_only_twin():
    """silero's diagnosis (bench.quantized._int8_weights_only): a float32 copy whose two
    weights are their int8 codes * scales (the reference's rounding), nothing else changed,
    the module itself untouched; its outputs between float32's and int8's."""
    from fastlstm.bench import quantized
    from fastlstm.reference.quantized import Int8Matrix

    m = fastlstm.LSTM(5, 8, seed=3).eval()
    before = {k: v.copy() for k, v in m.state_dict().items()}
    twin = quantized._int8_weights_only(m)
    for name, value in twin.state_dict().items():
        if name in ("weight_ih_l0", "weight_hh_l0"):
            np.testing.assert_array_equal(value, Int8Matrix.quantize(before[name]).dequantized())
            assert not np.array_equal(value, before[name])
        else:
            np.testing.assert_array_equal(value, before[name])
    for name, value in m.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    x = np.random.default_rng(0).standard_normal((7, 2, 5)).astype(np.float32)
    y32, yw = m(x)[0], twin(x)[0]
    err = np.abs(yw - y32).max()
    assert 0 < err < 0.05


def test_demo_models_quantized():
    """fastlstm.demos.quantized: a trained demo model evaluated with its LSTM quantized (a
    short adding run); the structure and head are shared, the float model untouched."""
    from fastlstm.demos import quantized as demo_q

    result = demo_q.adding_accuracy(epochs=1, samples=64)
    assert set(result["results"]) == {"float32", "int8", "bfloat16"}
    f32 = result["results"]["float32"]
    for p in ("int8", "bfloat16"):
        assert abs(result["results"][p] - f32) < 0.05 * max(f32, 1e-3) + 1e-3
        assert result["max_abs_output_diff"][p] < 0.05


def test_calibrated_weights_only_twin_and_the_calibration_clip():
    """The calibrated variant of the twin uses quantize("int8", calibration=...)'s codes, and
    the silero report's calibration clip is another signal than the scored one."""
    from fastlstm.bench import quantized
    from fastlstm.layers._calibration import input_grams
    from fastlstm.reference.quantized import Int8Matrix

    m = fastlstm.LSTM(5, 8, seed=3).eval()
    x_cal = np.random.default_rng(1).standard_normal((20, 3, 5)).astype(np.float32)
    twin = quantized._int8_weights_only(m, x_cal)
    grams = input_grams(m, x_cal)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        np.testing.assert_array_equal(
            twin.state_dict()[name],
            Int8Matrix.quantize(m.state_dict()[name], grams[name]).dequantized())
    clip, scored = quantized.calibration_audio(2.0), quantized.synthetic_audio(2.0)
    assert clip.dtype == np.float32 and clip.shape == scored.shape
    assert np.abs(clip).max() < 1 and np.abs(np.corrcoef(clip, scored)[0, 1]) < 0.2
