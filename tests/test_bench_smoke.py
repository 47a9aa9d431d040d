"""Smoke test of `python -m fastlstm bench` (fastlstm._bench) and of its correctness gate
(fastlstm._peers.check_contender): one tiny shape, a few milliseconds of timing."""
import dataclasses
import json

import numpy as np
import pytest

import fastlstm
from fastlstm import _bench, _peers


def test_bench_smoke(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench.json"
    rc = _bench.main(["--shapes", "12x5x3x4", "--lengths-shapes", "12x5x3x4", "--min-time",
                      "0.01", "--repeats", "3", "--peak-size", "128", "--threads", "1",
                      "--stream-sizes", "6", "--no-stacks", "--no-training", "--no-progress", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fastlstm bench" in text and "variable lengths:" in text and "stream steps" in text
    data = json.loads(out.read_text())
    streams = {(r["cell"], r["contender"]) for r in data["streams"]}
    for backend in fastlstm.available_backends():   # the stream table: LSTM and GRU steps
        assert {("lstm", backend), ("gru", backend)} <= streams
    assert all(r["median_s"] > 0 and r["max_rel_error"] <= _peers.RTOL and r["I"] == 6
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
    assert all(r["median_s"] > 0 and r["gflops"] > 0 and r["max_rel_error"] <= _peers.RTOL
               for r in rows)
    assert data["meta"]["matmul"]["gflops"] > 0
    installed_peers = [p for p in _peers.PEERS if _peers.peer_available(p)[0]]
    for peer in installed_peers:  # the peer parts only where torch / onnxruntime import
        assert (peer, "inference") in got
        for r in rows:
            if r["family"] == "fastlstm" and (peer, r["mode"]) in got:
                assert r["speedup"][peer] > 0

    # A contender computing the wrong thing must be refused before any timing. Gates in the
    # wrong order (ONNX's i,o,f,c fed where PyTorch's i,f,g,o is expected) is the classic slip.
    problem = _peers.make_problem(5, 2, 3, 4)
    ref = _peers.reference(problem)
    swapped = dataclasses.replace(
        problem, **{k: _peers.torch_to_onnx_gates(getattr(problem, k))
                    for k in ("w_ih", "w_hh", "b_ih", "b_hh")})
    for name in ["numpy"] + installed_peers:
        with pytest.raises(_peers.MismatchError, match=name):
            _peers.check_contender(_peers.build(name, swapped), ref)
    # the same for the GRU (ONNX's z, r, h fed where PyTorch's r, z, n is expected), with lengths
    problem = _peers.make_problem(6, 3, 3, 4, cell="gru", lengths=True)
    ref = _peers.reference(problem)
    swapped = dataclasses.replace(
        problem, **{k: _peers.torch_to_onnx_gates(getattr(problem, k), "gru")
                    for k in ("w_ih", "w_hh", "b_ih", "b_hh")})
    for name in ["numpy"] + installed_peers:
        assert _peers.check_contender(_peers.build(name, problem), ref)["y"] <= _peers.RTOL
        with pytest.raises(_peers.MismatchError, match=name):
            _peers.check_contender(_peers.build(name, swapped), ref)
    problem = _peers.make_problem(5, 2, 3, 4)
    ref = _peers.reference(problem)
    # only a gradient wrong: training is checked too
    good = _peers.build("numpy", problem)
    bad_grad = dataclasses.replace(
        good, grads_of=lambda g: {**good.grads_of(g), "w_hh": good.grads_of(g)["w_hh"] * 1.01})
    assert _peers.check_contender(good, ref)["grad w_hh"] == 0.0
    with pytest.raises(_peers.MismatchError, match="grad w_hh"):
        _peers.check_contender(bad_grad, ref)

    # ... and the command line stops with an error instead of printing a table
    def wrong_builder(problem_, threads=1):
        c = _peers.build_fastlstm("numpy", problem_, threads)
        return dataclasses.replace(c, y_of=lambda y: np.asarray(y[0]) * 1.001)

    monkeypatch.setitem(_peers.CONTENDERS, "numpy", wrong_builder)
    rc = _bench.main(["--shapes", "5x2x3x4", "--contenders", "numpy", "--min-time", "0",
                      "--peak-size", "64", "--no-progress", "--stream-sizes", "--no-stacks",
                      "--no-training"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "disagrees with fastlstm's NumPy reference" in captured.err
    assert "median ms" not in captured.out


def test_bench_stacks_smoke():
    """The layer-stack table on tiny stacks: every contender checked against the NumPy backend
    (y, and every weight gradient in training) and timed; ratios for fastlstm's rows."""
    from fastlstm import _bench_stacks

    names = list(_peers.available_contenders())
    tiny = (("lstm tiny", "lstm", 2, True, (4, 2, 3, 5)), ("gru tiny", "gru", 2, False, (4, 2, 3, 5)))
    rows = _bench_stacks.run_stacks(names, 1, min_time=0.0, repeats=1, stacks=tiny)
    got = {(r.model, r.mode, r.contender) for r in rows}
    for backend in fastlstm.available_backends():
        assert {("lstm tiny", "training", backend), ("gru tiny", "inference", backend)} <= got
    assert all(r.median_s > 0 and r.max_rel_error <= _peers.RTOL for r in rows)
    installed_peers = [p for p in _peers.PEERS if _peers.peer_available(p)[0]]
    for r in rows:
        if r.contender in fastlstm.available_backends() and r.mode == "inference":
            assert set(r.speedup) == set(installed_peers)
    assert "layer stacks" in _bench_stacks.format_stacks(rows, 1)


def test_bench_fit_smoke():
    """fastlstm.fit against the PyTorch loop on a tiny adding problem: both loops train the
    same weights to the same result, and the report names the CPU and both times."""
    pytest.importorskip("torch")
    from fastlstm import _bench_fit

    result = _bench_fit.run(T=10, samples=64, epochs=1, repeats=1, hidden=8)
    assert result["fastlstm_s"] > 0 and result["torch_s"] > 0
    assert result["ratio"] == pytest.approx(result["torch_s"] / result["fastlstm_s"])
    assert result["max_weight_diff"] < 1e-4
    text = _bench_fit.format(result)
    assert result["cpu"] in text and "ratio" in text
