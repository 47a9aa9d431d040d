"""fastlstm.dask (issue 19): batch inference on dask arrays and data-parallel training on a
distributed cluster, the threads on the workers, faults (a worker killed mid-computation),
and a scheduler and workers started with the dask command line.

One module-scoped LocalCluster (2 worker processes, 1 thread each) serves most tests.
"""
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastlstm  # noqa: E402
import fastlstm.dask as fdask  # noqa: E402
from fastlstm import (GRU, LSTM, RNN, SGD, Adam, Linear, ManyToMany, ManyToOne,  # noqa: E402
                      OneToMany)
from fastlstm import _threads  # noqa: E402
from fastlstm.dask import _workers  # noqa: E402
from fastlstm.training.losses import _log_softmax  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    # the scheduler's HTTP server (the dashboard, /metrics) on a free port: its default, 8787,
    # may be taken on a shared machine (or by the bench test's cluster), which distributed
    # reports as a UserWarning (an error here)
    # without the active memory manager: it may drop a worker's idle copy of the model's
    # holder (a replica that another worker also has), and a task stolen back to that worker
    # then fetches it again and loads the model a second time, which the tests that count
    # the loads would see (fastlstm/dask/_workers.py)
    with dask.config.set({"distributed.scheduler.active-memory-manager.start": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


def _softmax(out):
    return np.exp(_log_softmax(out))


def _data(n=240, T=12, I=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, T, I), dtype=np.float32)


def _many_to_one(H=16, C=4, seed=0, **rnn):
    return ManyToOne(LSTM(3, H, batch_first=True, seed=seed, **rnn), Linear(H * (
        2 if rnn.get("bidirectional") else 1), C, seed=seed))


# --------------------------------------------------------------------------------------------
# importing


def test_import_fastlstm_does_not_import_dask():
    code = "import sys, fastlstm; print(sorted(m for m in ('dask', 'distributed') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_import_without_dask_says_how_to_install():
    code = ("import sys\nsys.modules['distributed'] = None\n"
            "try:\n    import fastlstm.dask\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install "fastlstm[dask]"' in out.stdout


# --------------------------------------------------------------------------------------------
# threads


def test_default_threads_follow_omp_num_threads_then_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _threads.default_threads() == 3 == _threads.current_threads()
    for value, expected in (("1", 1), ("5", 5), ("4,2", 4), ("", 3), ("0", 3), ("x", 3)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert _threads.default_threads() == expected, value
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with fastlstm.threads(1):
        assert _threads.current_threads() == 1
    assert _threads.current_threads() == 2


def test_threads_for_task_outside_a_worker(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _workers.threads_for_task() == 3            # this (main) thread: the default
    seen = []
    t = threading.Thread(target=lambda: seen.append(_workers.threads_for_task()))
    t.start()
    t.join()
    assert seen == [1]                                 # a pool thread of Dask's own scheduler
    # a worker without a nanny (OMP_NUM_THREADS unset): its CPUs shared by its threads
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(_workers, "_worker_nthreads", lambda: 2)
    monkeypatch.setattr(_threads, "usable_cpus", lambda: 8)
    assert _workers.threads_for_task() == 4
    with _workers.task_threads() as n:
        assert n == 4 == _threads.current_threads()


def test_workers_run_the_kernels_on_their_thread_setting(client):
    """Dask's nanny starts the workers with OMP_NUM_THREADS=1: a task's kernels use 1."""
    futures = [client.submit(_workers.threads_for_task, pure=False, workers=[w])
               for w in client.nthreads()]
    assert client.gather(futures) == [1, 1]
    assert set(client.run(os.environ.get, "OMP_NUM_THREADS").values()) == {"1"}


# --------------------------------------------------------------------------------------------
# inference


def test_predict_proba_equals_in_process_bit_for_bit(client):
    x = _data(300)
    model = _many_to_one()
    model(x[:3])                 # packed weights that must not travel
    X = da.from_array(x, chunks=(70, 12, 3))
    proba = fdask.predict_proba(model, X)
    assert isinstance(proba, da.Array) and proba.chunks == ((70, 70, 70, 70, 20), (4,))
    expected = _softmax(model.eval()(x))
    got = proba.compute()
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert np.array_equal(fdask.predict(model, X).compute(), model(x))


def test_the_model_reaches_each_worker_once(client):
    x = _data(400)
    model = _many_to_one()
    X = da.from_array(x, chunks=(25, 12, 3))       # 16 chunks
    out = fdask.predict(model, X)
    graph = dict(out.__dask_graph__())
    model_keys = [k for k in graph if str(k).startswith("fastlstm-model-")]
    assert len(model_keys) == 1
    before = client.run(_workers.load_count)
    assert np.array_equal(out.compute(), model.eval()(x))
    after = client.run(_workers.load_count)
    assert all(after[w] - before[w] <= 1 for w in after)
    assert sum(after[w] - before[w] for w in after) >= 1


def test_predict_structures_with_lengths_layouts_and_steps(client):
    rng = np.random.default_rng(3)
    x = _data(90, T=9)
    lengths = rng.integers(0, 10, 90)
    m2o = _many_to_one(bidirectional=True, num_layers=2).eval()
    X = da.from_array(x, chunks=(40, 9, 3))
    got = fdask.predict(m2o, X, lengths=lengths).compute()
    assert np.array_equal(got, m2o(x, lengths=lengths))
    # time-major ManyToMany, float64, lengths as a dask array
    m2m = ManyToMany(GRU(3, 8, seed=1, dtype="float64"), Linear(8, 2, seed=1, dtype="float64"))
    xt = np.ascontiguousarray(x.transpose(1, 0, 2)).astype(np.float64)
    Xt = da.from_array(xt, chunks=(9, 25, 3))
    dl = da.from_array(lengths, chunks=25)
    got = fdask.predict(m2m, Xt, lengths=dl)
    assert got.chunks[1] == (25, 25, 25, 15)
    assert np.array_equal(got.compute(), m2m.eval()(xt, lengths=lengths))
    # OneToMany: x0 (N, I), `steps` outputs
    o2m = OneToMany(RNN(2, 8, batch_first=True, seed=2), Linear(8, 2, seed=2)).eval()
    x0 = rng.standard_normal((50, 2)).astype(np.float32)
    got = fdask.predict(o2m, da.from_array(x0, chunks=(20, 2)), steps=5).compute()
    assert np.array_equal(got, o2m(x0, 5))


@pytest.mark.parametrize("output", ["state", "outputs", "h_n", "c_n"])
def test_transform_a_stack(client, output):
    x = _data(80, T=7)
    stack = LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True, seed=4)
    y, (h_n, c_n) = stack(x)
    expected = {"state": np.concatenate(list(h_n[-2:]), axis=-1), "outputs": y,
                "h_n": h_n, "c_n": c_n}[output]
    got = fdask.transform(stack, da.from_array(x, chunks=(30, 7, 3)), output=output)
    batch_axis = 1 if output in ("h_n", "c_n") else 0
    assert got.chunks[batch_axis] == (30, 30, 20)
    assert np.array_equal(got.compute(), expected)


def test_transform_a_structure_uses_its_rnn(client):
    x = _data(60, T=5)
    model = _many_to_one()
    _, (h_n, _) = model.rnn(x)
    got = fdask.transform(model, da.from_array(x, chunks=(25, 5, 3))).compute()
    assert np.array_equal(got, h_n[-1])


def test_inference_bad_input():
    x = _data(40, T=6)
    model = _many_to_one()
    X = da.from_array(x, chunks=(20, 6, 3))
    with pytest.raises(TypeError, match="X: expected a dask array"):
        fdask.predict(model, x)
    with pytest.raises(ValueError, match=r"X: chunked along axis 1 \(time\)"):
        fdask.predict_proba(model, X.rechunk((20, 3, 3)))
    with pytest.raises(ValueError, match=r"X: chunked along axis 2 \(features\)"):
        fdask.transform(model, X.rechunk((20, 6, 1)))
    with pytest.raises(ValueError, match="lengths: its chunks along axis 0"):
        fdask.predict(model, X, lengths=da.from_array(np.full(40, 6), chunks=10))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(N,\)"):
        fdask.predict(model, X, lengths=np.full(39, 6))
    with pytest.raises(TypeError, match="lengths: expected integers"):
        fdask.predict(model, X, lengths=np.full(40, 6.0))
    with pytest.raises(TypeError, match="model: a layer stack"):
        fdask.predict(model.rnn, X)
    with pytest.raises(TypeError, match="model: expected a fitted estimator"):
        fdask.predict(object(), X)
    with pytest.raises(ValueError, match="output: expected one of"):
        fdask.transform(model, X, output="last")
    with pytest.raises(ValueError, match="output: 'c_n'"):
        fdask.transform(GRU(3, 4, batch_first=True), X, output="c_n")
    with pytest.raises(TypeError, match="steps: only for a OneToMany"):
        fdask.predict(model, X, steps=3)
    with pytest.raises(TypeError, match="X: expected an array of numbers"):
        fdask.predict(model, X.astype(bool))


def _estimators():
    sk = pytest.importorskip("fastlstm.sklearn")
    return sk.SequenceClassifier, sk.SequenceRegressor


def test_estimator_predictions_bit_for_bit(client):
    SequenceClassifier, SequenceRegressor = _estimators()
    rng = np.random.default_rng(7)
    X = rng.standard_normal((100, 9))                  # univariate sequences, float64
    labels = np.where(X[:, 0] > 0, "up", "down")
    clf = SequenceClassifier(hidden_size=8, epochs=1, random_state=0).fit(X, labels)
    dX = da.from_array(X, chunks=((40, 40, 1, 19), (9,)))     # a chunk of one row too
    proba = fdask.predict_proba(clf, dX)
    assert proba.chunks == ((40, 40, 1, 19), (2,))
    assert np.array_equal(proba.compute(), clf.predict_proba(X))
    got = fdask.predict(clf, dX).compute()
    assert got.dtype == clf.classes_.dtype and np.array_equal(got, clf.predict(X))
    lengths = rng.integers(1, 10, 100)
    assert np.array_equal(fdask.predict_proba(clf, dX, lengths=lengths).compute(),
                          clf.predict_proba(X, lengths=lengths))
    Y = np.stack([X[:, 0], X[:, 1] - X[:, 2]], axis=1)
    reg = SequenceRegressor(hidden_size=8, epochs=1, random_state=0).fit(X, Y)
    assert np.array_equal(fdask.predict(reg, dX).compute(), reg.predict(X))
    with pytest.raises(TypeError, match="model: SequenceRegressor has no predict_proba"):
        fdask.predict_proba(reg, dX)


def test_estimator_transform_is_its_fitted_stack(client):
    SequenceClassifier, _ = _estimators()
    from fastlstm.sklearn._data import as_sequences

    rng = np.random.default_rng(8)
    X = rng.standard_normal((60, 7, 2))
    clf = SequenceClassifier(hidden_size=8, epochs=1, random_state=0).fit(
        X, (X[:, 0, 0] > 0).astype(int))
    seqs, _ = as_sequences(X, dtype=clf.model_.dtype)
    _, (h_n, _) = clf.model_.rnn(seqs)
    got = fdask.transform(clf, da.from_array(X, chunks=(25, 7, 2))).compute()
    assert np.array_equal(got, h_n[-1])


# --------------------------------------------------------------------------------------------
# training


def _fit_both(client, make, x, y, dask_kw=None, **kw):
    """fastlstm.fit and fastlstm.dask.fit from the same initial weights and seed."""
    a, b = make(), make()
    ha = fastlstm.fit(a, x, y, optimizer=Adam(a.modules, lr=1e-2), seed=5,
                      **{k: v for k, v in kw.items() if k != "chunks"})
    chunks = kw.pop("chunks", 50)
    X = da.from_array(x, chunks=(chunks,) + x.shape[1:])
    Y = da.from_array(y, chunks=(chunks,) + y.shape[1:])
    lengths = kw.pop("lengths", None)
    hb = fdask.fit(b, X, Y, client=client, optimizer=Adam(b.modules, lr=1e-2), seed=5,
                   lengths=lengths, **kw, **(dask_kw or {}))
    return a, ha, b, hb


def _assert_weights_close(a, b, tol=2e-5):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_allclose(sb[k], sa[k], rtol=tol, atol=tol, err_msg=k)


def test_fit_equals_fastlstm_fit(client):
    rng = np.random.default_rng(1)
    x = _data(230, T=10)
    y = rng.integers(0, 3, 230)
    a, ha, b, hb = _fit_both(client, lambda: _many_to_one(C=3), x, y, loss="cross_entropy",
                             epochs=2, batch_size=64, clip_norm=1.0, validation_split=0.2)
    _assert_weights_close(a, b)
    assert set(hb.history) == set(ha.history)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(hb.history[key], ha.history[key], rtol=1e-5, err_msg=key)
    assert hb.best_epoch == ha.best_epoch and hb.monitor == "val_loss"


def test_fit_per_step_loss_with_lengths_and_numpy_validation(client):
    """ManyToMany with lengths: each shard's part counts by its valid steps."""
    rng = np.random.default_rng(2)
    x = _data(200, T=8)
    y = rng.standard_normal((200, 8, 2)).astype(np.float32)
    lengths = rng.integers(1, 9, 200)

    def make():
        return ManyToMany(LSTM(3, 8, batch_first=True, seed=1), Linear(8, 2, seed=1))

    xv, yv = x[:40], y[:40]
    a, ha, b, hb = _fit_both(client, make, x, y, loss="mse", epochs=2, batch_size=48,
                             lengths=lengths, validation_data=(xv, yv), shuffle=False,
                             chunks=64)
    _assert_weights_close(a, b)
    np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(hb.history["val_loss"], ha.history["val_loss"], rtol=1e-5)


def test_fit_time_major_with_dask_validation_data_and_early_stopping(client):
    rng = np.random.default_rng(9)
    x = np.ascontiguousarray(_data(150, T=6).transpose(1, 0, 2))     # (T, N, I)
    y = rng.standard_normal((150, 2)).astype(np.float32)
    xv, yv = x[:, :30], y[:30]

    def make():
        return ManyToOne(GRU(3, 8, seed=3), Linear(8, 2, seed=3))

    a, b = make(), make()
    ha = fastlstm.fit(a, x, y, optimizer=Adam(a.modules, lr=1e-2), epochs=3, batch_size=32,
                      seed=2, validation_data=(xv, yv), early_stopping=1)
    X, Y = da.from_array(x, chunks=(6, 40, 3)), da.from_array(y, chunks=(40, 2))
    hb = fdask.fit(b, X, Y, client=client, optimizer=Adam(b.modules, lr=1e-2), epochs=3,
                   batch_size=32, seed=2, early_stopping=1,
                   validation_data=(da.from_array(xv, chunks=(6, 16, 3)),
                                    da.from_array(yv, chunks=(16, 2))))
    _assert_weights_close(a, b)
    np.testing.assert_allclose(hb.history["val_loss"], ha.history["val_loss"], rtol=1e-5)
    assert (hb.best_epoch, hb.stopped_early) == (ha.best_epoch, ha.stopped_early)


def test_fit_averaging_every_step_with_sgd_is_the_synchronous_step(client):
    rng = np.random.default_rng(3)
    x = _data(160, T=6)
    y = rng.standard_normal((160, 2)).astype(np.float32)
    a, b = _many_to_one(C=2), _many_to_one(C=2)
    fastlstm.fit(a, x, y, optimizer=SGD(a.modules, lr=0.2), epochs=2, batch_size=40, seed=0)
    X, Y = da.from_array(x, chunks=(40, 6, 3)), da.from_array(y, chunks=(40, 2))
    fdask.fit(b, X, Y, client=client, optimizer=SGD(b.modules, lr=0.2), epochs=2,
              batch_size=40, seed=0, average_every=1)
    _assert_weights_close(a, b)
    # every 3 steps, Adam: local steps, then the average; the optimizer keeps a state
    c = _many_to_one(C=2)
    opt = Adam(c.modules, lr=1e-2)
    h = fdask.fit(c, X, Y, client=client, optimizer=opt, epochs=3, batch_size=20, seed=0,
                  average_every=3, validation_data=(X[:40], Y[:40]))
    assert h.epochs == 3 and h.history["loss"][-1] < h.history["loss"][0]
    assert len(h.history["val_loss"]) == 3
    assert opt.state and all(st["step"] >= 1 for st in opt.state.values())


def test_fit_dropout_masks_are_reproducible(client):
    rng = np.random.default_rng(4)
    x = _data(120, T=5)
    y = rng.standard_normal((120, 2)).astype(np.float32)
    X, Y = da.from_array(x, chunks=(30, 5, 3)), da.from_array(y, chunks=(30, 2))
    states = []
    for _ in range(2):
        m = ManyToOne(LSTM(3, 8, num_layers=2, dropout=0.5, batch_first=True, seed=0),
                      Linear(8, 2, seed=0))
        fdask.fit(m, X, Y, client=client, epochs=1, batch_size=40, seed=9)
        states.append(m.state_dict())
    assert all(np.array_equal(states[0][k], states[1][k]) for k in states[0])


def test_fit_progress_bar(client, capsys):
    pytest.importorskip("tqdm")
    rng = np.random.default_rng(5)
    x = _data(60, T=4)
    y = rng.standard_normal((60, 4)).astype(np.float32)
    m = _many_to_one()
    fdask.fit(m, da.from_array(x, chunks=(30, 4, 3)), da.from_array(y, chunks=(30, 4)),
              client=client, epochs=1, batch_size=30, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_fit_bad_input(client):
    x = _data(40, T=6)
    y = np.zeros((40, 4), np.float32)
    X, Y = da.from_array(x, chunks=(20, 6, 3)), da.from_array(y, chunks=(20, 4))
    model = _many_to_one()
    with pytest.raises(TypeError, match="client: expected a distributed.Client"):
        fdask.fit(model, X, Y)
    with pytest.raises(TypeError, match="client: expected a distributed.Client"):
        fdask.fit(model, X, Y, client="tcp://127.0.0.1:8786")
    with pytest.raises(TypeError, match="X: expected a dask array"):
        fdask.fit(model, x, Y, client=client)
    with pytest.raises(TypeError, match="y: expected a dask array"):
        fdask.fit(model, X, y, client=client)
    with pytest.raises(ValueError, match=r"X: chunked along axis 1 \(time\)"):
        fdask.fit(model, X.rechunk((20, 3, 3)), Y, client=client)
    with pytest.raises(ValueError, match="y: its chunks along axis 0 .* not aligned with X"):
        fdask.fit(model, X, Y.rechunk((10, 4)), client=client)
    with pytest.raises(ValueError, match="y: expected 40 samples"):
        fdask.fit(model, X, Y[:30], client=client)
    with pytest.raises(ValueError, match="lengths: its chunks"):
        fdask.fit(model, X, Y, client=client, lengths=da.from_array(np.full(40, 6), chunks=8))
    with pytest.raises(TypeError, match="y: loss='cross_entropy' needs integer"):
        fdask.fit(model, X, Y, client=client, loss="cross_entropy")
    with pytest.raises(ValueError, match="average_every: expected an integer >= 1"):
        fdask.fit(model, X, Y, client=client, average_every=0)

    class Plain:
        def step(self, grads):
            pass

    with pytest.raises(TypeError, match="optimizer: average_every needs"):
        fdask.fit(model, X, Y, client=client, optimizer=Plain(), average_every=2)
    with pytest.raises(ValueError, match="epochs: expected an integer >= 1"):
        fdask.fit(model, X, Y, client=client, epochs=0)
    with pytest.raises(ValueError, match="X: its chunk sizes along the batch axis"):
        Xu = X[da.from_array(np.ones(40, bool), chunks=20)]
        fdask.fit(model, Xu, Y, client=client)
    with pytest.raises(TypeError, match="model: expected a model with forward"):
        fdask.fit(object(), X, Y, client=client)


# --------------------------------------------------------------------------------------------
# faults: a worker process killed in the middle of a task


class _DiesOnce(ManyToOne):
    """A ManyToOne whose forward, at its `after`-th call in a process, kills that process
    (SIGKILL) when the flag file exists, removing it first: one worker dies mid-task, and
    the task's redo elsewhere (the file gone) computes as the plain model does."""

    def __init__(self, rnn, head, flag, after):
        super().__init__(rnn, head)
        self.flag, self.after, self.calls = flag, after, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.calls >= self.after and os.path.exists(self.flag):
            try:
                os.remove(self.flag)
            except FileNotFoundError:      # the other worker took it
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(*args, **kwargs)


@pytest.fixture
def by_value():
    """Pickle this module's classes by value (the workers cannot import the test module)."""
    import cloudpickle

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def _pids(client):
    client.wait_for_workers(2, timeout=60)
    return set(client.run(os.getpid).values())


def test_predict_survives_a_worker_killed_mid_computation(client, tmp_path, by_value):
    flag = tmp_path / "kill"
    x = _data(600, T=20)
    model = _DiesOnce(LSTM(3, 16, batch_first=True, seed=0), Linear(16, 4, seed=0),
                      str(flag), after=3)
    out = fdask.predict_proba(model, da.from_array(x, chunks=(50, 20, 3)))
    pids = _pids(client)
    flag.write_text("")
    got = out.compute()
    assert not flag.exists()                          # a worker took it and died
    assert _pids(client) != pids                       # ... and was replaced
    plain = ManyToOne(model.rnn, model.head).eval()
    assert np.array_equal(got, _softmax(plain(x)))    # nothing lost, nothing twice


def test_fit_survives_a_worker_killed_mid_step(client, tmp_path, by_value):
    flag = tmp_path / "kill"
    rng = np.random.default_rng(6)
    x = _data(240, T=10)
    y = rng.integers(0, 3, 240)
    X, Y = da.from_array(x, chunks=(40, 10, 3)), da.from_array(y, chunks=40)

    def run(flag_path):
        m = _DiesOnce(LSTM(3, 16, batch_first=True, seed=0), Linear(16, 3, seed=0),
                      str(flag_path), after=4)
        h = fdask.fit(m, X, Y, client=client, loss="cross_entropy",
                      optimizer=Adam(m.modules, lr=1e-2), epochs=2, batch_size=60, seed=3)
        return m, h

    clean, h_clean = run(tmp_path / "never")
    pids = _pids(client)
    flag.write_text("")
    faulty, h_faulty = run(flag)
    assert not flag.exists() and _pids(client) != pids
    sa, sb = clean.state_dict(), faulty.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)      # bit for bit: nothing twice
    assert h_faulty.history["loss"] == h_clean.history["loss"]
    assert h_faulty.history["accuracy"] == h_clean.history["accuracy"]


# --------------------------------------------------------------------------------------------
# a scheduler and two workers started with the dask command line


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cli_cluster(tmp_path):
    exe = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if exe is None:
        pytest.skip("the dask command line is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    log = open(tmp_path / "cluster.log", "wb")
    # the scheduler without the active memory manager, as in the client fixture
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START="False")
    try:
        procs.append(subprocess.Popen([exe, "scheduler", "--host", "127.0.0.1", "--port",
                                       str(port), "--no-dashboard"], stdout=log, stderr=log,
                                      cwd=tmp_path, env=env))
        for i in range(2):
            procs.append(subprocess.Popen(
                [exe, "worker", address, "--nthreads", "1", "--no-dashboard", "--name",
                 f"w{i}", "--local-directory", str(tmp_path / f"w{i}")],
                stdout=log, stderr=log, cwd=tmp_path))
        yield address
    finally:
        # the workers first (they say goodbye to the scheduler), then the scheduler; a
        # process that does not end in time is killed
        for group in (procs[1:], procs[:1]):
            for p in group:
                if p.poll() is None:
                    p.terminate()
            deadline = time.monotonic() + 15
            for p in group:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        log.close()


def test_predict_and_fit_on_a_command_line_cluster(cli_cluster):
    from distributed import Client

    with Client(cli_cluster, timeout=60) as c:
        c.wait_for_workers(2, timeout=90)
        x = _data(200, T=8)
        model = _many_to_one()
        X = da.from_array(x, chunks=(50, 8, 3))
        assert np.array_equal(fdask.predict_proba(model, X).compute(),
                              _softmax(model.eval()(x)))
        assert sorted(c.run(_workers.load_count).values()) == [1, 1]
        y = np.random.default_rng(0).integers(0, 4, 200)
        a, b = _many_to_one(), _many_to_one()
        ha = fastlstm.fit(a, x, y, loss="cross_entropy", epochs=2, batch_size=50, seed=1)
        hb = fdask.fit(b, X, da.from_array(y, chunks=50), client=c, loss="cross_entropy",
                       epochs=2, batch_size=50, seed=1)
        _assert_weights_close(a, b)
        np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-5)
        futures = [c.submit(_workers.threads_for_task, pure=False, workers=[w])
                   for w in c.nthreads()]
        assert c.gather(futures) == [1, 1]


def test_shipped_holder_pickles_without_its_live_model():
    """What a worker sends on to a peer is the copy made on the client, not its live model
    (whose packed weights do not survive pickling)."""
    x = _data(30, T=4)
    model = _many_to_one().eval()
    holder = _workers._Shipped(fdask._inference._structure_chunk, model,
                               {"steps": None, "proba": False}, "t")
    first = holder(x, None)                    # the live copy, weights packed
    again = pickle.loads(pickle.dumps(holder))
    assert again._model is None and np.array_equal(again(x, None), first)


def test_bench_dask_scaling_runs(capsys):
    """python -m fastlstm.bench.dask_scaling --quick (its own cluster; tiny sizes)."""
    from fastlstm.bench import dask_scaling

    assert dask_scaling.main(["--quick", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "Inference: predict_proba" in out and "break-even" in out
