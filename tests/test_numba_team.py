"""The Numba drivers' team of threads (src/kernels/numba_team.py) and its column split.

- The barrier: a team of threads passing it many times, each checking at every pass that the
  whole team arrived at the previous one.
- The split through the API, where the rule picks it (B=1, H=256), on 2 and 3 threads:
  bit for bit the same as on 2 threads, and the NumPy reference to rounding; the backward's
  walk split the same way (training through the API: the walk's dh_0 bit for bit, every
  gradient the reference's), also on a loaded machine.
- Python threads running split calls at once (they share the pool); a loaded machine (a busy
  process per core: the barrier yields after a bounded spin); a child forked after the parent
  ran a team (the pool is made afresh there; Numba's own OpenMP layer would kill the child).
"""
import dataclasses
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastlstm

from conftest import require_backend, run_in_forked_child


@pytest.fixture(scope="module")
def team_module():
    require_backend("numba")
    from fastlstm._kernels import numba_team

    return numba_team


def test_numba_barrier_holds_every_pass(team_module):
    """Each thread adds 1 to a shared counter per pass, then meets the others: after pass p
    every thread sees exactly team * p."""
    from numba import njit

    atomic_add, atomic_load, barrier = (team_module.atomic_add, team_module.atomic_load,
                                        team_module.barrier)

    @njit(nogil=True)
    def passes(counter, seen, n, tid, team, sync):
        for p in range(n):
            atomic_add(counter, 0, 1)
            barrier(sync, team)
            seen[tid, p] = atomic_load(counter, 0)
            barrier(sync, team)      # nobody adds for pass p + 1 before all have looked

    team, n = 3, 2000
    counter = np.zeros(1, np.int64)
    seen = np.zeros((team, n), np.int64)
    team_module.run_team(passes, (counter, seen, n), team)
    assert (seen == team * np.arange(1, n + 1)).all()


def _problem(cell, T=40, B=1, I=24, H=256, seed=0):
    rng = np.random.default_rng(seed)
    model = {"lstm": fastlstm.LSTM, "gru": fastlstm.GRU, "rnn": fastlstm.RNN}[cell](
        I, H, seed=seed, backend="numba")
    model.eval()
    return model, rng.standard_normal((T, B, I)).astype(np.float32)


def _call(model, x, n_threads):
    with fastlstm.threads(n_threads):
        y, state = model(x)
    return [y] + list(state if isinstance(state, tuple) else (state,))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_numba_split_through_the_api(team_module, cell, monkeypatch):
    from fastlstm._kernels import numba_recurrent_forward as nb_fwd

    teams = []
    run_team = nb_fwd.run_team
    monkeypatch.setattr(nb_fwd, "run_team", lambda k, a, team: (teams.append(team),
                                                                 run_team(k, a, team)))
    model, x = _problem(cell, T=80)
    two = _call(model, x, 2)
    three = _call(model, x, 3)
    assert teams == [2, 3], "the rule did not pick the split at B=1, H=256"
    for a, b in zip(two, three):
        np.testing.assert_array_equal(a, b)
    ref_model = type(model)(24, 256, seed=0, backend="numpy")
    ref_model.eval()
    for a, b in zip(two, _call(ref_model, x, 1)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_numba_split_from_python_threads(team_module):
    model, x = _problem("lstm")
    want = _call(model, x, 2)
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: _call(model, x, 2), range(9)))
    for got in runs:
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_numba_split_on_a_loaded_machine(team_module, busy_cores):
    model, x = _problem("gru", T=20)
    want = _call(model, x, 2)
    for n_threads in (2, 3):
        got = _call(model, x, n_threads)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def _train(cell, n_threads, backend="numba", T=80, H=256):
    """One training forward and backward of a B=1 layer through the functional API:
    (the gradients' fields as arrays)."""
    rng = np.random.default_rng(1)
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * H
    x = rng.standard_normal((T, 1, 24)).astype(np.float32)
    w_ih = (rng.standard_normal((G, 24)) * 0.1).astype(np.float32)
    w_hh = (rng.standard_normal((G, H)) * 0.06).astype(np.float32)
    b = np.zeros(G, np.float32)
    h0 = (rng.standard_normal((1, H)) * 0.1).astype(np.float32)
    run = {"lstm": fastlstm.forward, "gru": fastlstm.gru_forward, "rnn": fastlstm.rnn_forward}[cell]
    state = (h0, h0.copy()) if cell == "lstm" else (h0,)
    with fastlstm.threads(n_threads):
        _, _, tape = run(x, w_ih, w_hh, b, b, *state, backend=backend, return_tape=True)
        grads = fastlstm.backward(tape, np.ones((T, 1, H), np.float32))
    return {f.name: np.asarray(getattr(grads, f.name)) for f in dataclasses.fields(grads)
            if getattr(grads, f.name) is not None}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_numba_backward_split_through_the_api(team_module, cell, monkeypatch):
    """Training at B=1, H=256: the backward's rule picks the column split for its walk on 2
    and 3 threads; the walk's result (dh_0) is the same bits, every gradient the reference's."""
    from fastlstm._kernels import numba_recurrent_backward as nb_bwd

    picked = []
    run_team = nb_bwd.run_team
    monkeypatch.setattr(nb_bwd, "run_team", lambda k, a, team: (picked.append((team, a[-1])),
                                                                 run_team(k, a, team)))
    two, three = _train(cell, 2), _train(cell, 3)
    assert picked == [(2, False), (3, False)], picked
    np.testing.assert_array_equal(two["h0"], three["h0"])
    ref = _train(cell, 1, backend="numpy")
    for key, value in ref.items():
        np.testing.assert_allclose(two[key], value, rtol=2e-3, atol=2e-4, err_msg=key)


def test_numba_backward_split_on_a_loaded_machine(team_module, busy_cores):
    """The backward's split on 2 and 3 threads beside a busy process per core completes with
    the walk's result (dh_0, dc_0) bit for bit one thread's, the products to rounding."""
    want = _train("lstm", 1, T=20)     # 20 x 262K multiply-adds: the split on 2+ threads
    for n_threads in (2, 3):
        got = _train("lstm", n_threads, T=20)
        for key, value in want.items():
            if key in ("h0", "c0"):
                np.testing.assert_array_equal(got[key], value, err_msg=key)
            else:
                np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def _child(queue, model, x):
    queue.put(_call(model, x, 2))


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the default start method on Linux")
def test_numba_split_in_a_forked_child(team_module):
    model, x = _problem("lstm", T=10)
    want = _call(model, x, 2)            # the parent has run a team: its pool threads exist
    got = run_in_forked_child(_child, model, x)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_numba_run_team_reports_errors_of_its_helpers(team_module):
    """A helper thread's exception reaches the caller (the kernels never raise once started;
    this is a plain Python function that fails on thread 1 before any barrier)."""
    def kernel(flag, tid, team, sync):
        if tid == 1:
            raise RuntimeError("thread 1 failed")

    with pytest.raises(RuntimeError, match="thread 1 failed"):
        team_module.run_team(kernel, (None,), 2)


def test_numba_groups_of_rows_through_the_api(team_module, monkeypatch):
    """At B=32, H=128 the rule shares the call by groups of rows (by_rows): the reference to
    rounding, on 2 and 3 threads."""
    from fastlstm._kernels import numba_recurrent_forward as nb_fwd

    calls = []
    run_team = nb_fwd.run_team
    monkeypatch.setattr(nb_fwd, "run_team", lambda k, a, team: (calls.append((team, a[-1])),
                                                                 run_team(k, a, team)))
    model, x = _problem("lstm", T=30, B=32, I=16, H=128)
    ref_model = fastlstm.LSTM(16, 128, seed=0, backend="numpy")
    ref_model.eval()
    want = _call(ref_model, x, 1)
    for n_threads in (2, 3):
        for a, b in zip(_call(model, x, n_threads), want):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert calls == [(2, True), (3, True)]


def test_numba_backward_team_through_the_api(team_module, monkeypatch):
    """Training at B=32, H=128 on 2 threads: the backward runs on a team of two (the walk by
    groups of rows, the products after it shared); every gradient is the NumPy reference's to
    rounding."""
    from fastlstm._kernels import numba_recurrent_backward as nb_bwd

    teams = []
    run_team = nb_bwd.run_team
    monkeypatch.setattr(nb_bwd, "run_team", lambda k, a, team: (teams.append(team),
                                                                 run_team(k, a, team)))
    rng = np.random.default_rng(5)
    T, B, I, H = 30, 32, 16, 128
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = (0.1 * rng.standard_normal((4 * H, I))).astype(np.float32)
    w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(np.float32)
    b = (0.1 * rng.standard_normal(4 * H)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    results = {}
    for backend in ("numba", "numpy"):
        with fastlstm.threads(2):
            out = fastlstm.forward(x, w_ih, w_hh, b, b, lengths=lengths, backend=backend,
                                   return_tape=True)
            results[backend] = fastlstm.backward(out[-1], np.ones_like(out[0]))
    assert teams == [2]
    for key in ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"):
        want = getattr(results["numpy"], key)
        np.testing.assert_allclose(getattr(results["numba"], key), want, rtol=2e-4, atol=2e-4,
                                   err_msg=key)
