"""fastlstm.sklearn: SequenceClassifier and SequenceRegressor against scikit-learn's own
check_estimator, the accuracy target of the sign task, the forms of X, the errors, and the
meta-estimators (Pipeline, GridSearchCV with n_jobs=2), pickling and cloning."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import fastlstm  # noqa: E402
from fastlstm.sklearn import (XFAIL_CHECKS, SequenceClassifier, SequenceRegressor,  # noqa: E402
                              as_sequences)
from fastlstm.sklearn._compat import VERSION  # noqa: E402


def _sign_data(n, T=20, seed=0):
    """X ~ N(0, 1) (n, T); y = X[:, 0] > 0: the class is the sign of the first step."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T))
    return X, X[:, 0] > 0


# ------------------------------------------------------------------------------------------
# scikit-learn's contract


@pytest.mark.parametrize("Estimator", [SequenceClassifier, SequenceRegressor])
def test_check_estimator(Estimator):
    """Every check of scikit-learn's check_estimator passes with the default parameters
    (XFAIL_CHECKS, the checks that could not apply to sequence models, is empty)."""
    if VERSION < (1, 6):                                    # pragma: no cover
        check_estimator(Estimator())                        # _xfail_checks via _more_tags
        return
    results = check_estimator(Estimator(), expected_failed_checks=XFAIL_CHECKS,
                              on_fail=None, on_skip=None)
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert not failed
    passed = [r["check_name"] for r in results if r["status"] == "passed"]
    assert len(passed) >= 45
    for name in ("check_classifiers_train" if Estimator is SequenceClassifier
                 else "check_regressors_train", "check_estimators_pickle",
                 "check_methods_subset_invariance", "check_n_features_in_after_fitting",
                 "check_fit_idempotent", "check_estimators_partial_fit_n_features"):
        assert name in passed


def test_sign_task_accuracy_with_defaults():
    """The target: at least 0.9 held-out accuracy with the default settings, the class being
    the sign of the first of 20 steps."""
    X, y = _sign_data(1600)
    clf = SequenceClassifier(random_state=0).fit(X[:1000], y[:1000])
    accuracy = clf.score(X[1000:], y[1000:])
    assert accuracy >= 0.9, accuracy
    # the same sequences as (N, T, 1): the same predictions
    np.testing.assert_array_equal(clf.predict(X[1000:, :, None]), clf.predict(X[1000:]))
    assert clf.n_iter_ == clf.epochs == clf.history_.epochs


def test_import_fastlstm_does_not_import_sklearn_and_missing_sklearn_says_how():
    code = (
        "import sys\n"
        "import fastlstm\n"
        "assert 'sklearn' not in sys.modules and 'fastlstm.sklearn' not in sys.modules\n"
        "sys.modules['sklearn'] = None\n"       # as if scikit-learn were not installed
        "try:\n"
        "    import fastlstm.sklearn\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert 'pip install "fastlstm[sklearn]"' in out


# ------------------------------------------------------------------------------------------
# the forms of X


def test_as_sequences_forms():
    rng = np.random.default_rng(0)
    x3 = rng.standard_normal((4, 5, 3))
    x, lengths = as_sequences(x3)
    assert x.dtype == np.float32 and x.shape == (4, 5, 3) and lengths is None
    x, lengths = as_sequences(x3[:, :, 0].tolist(), dtype="float64")    # a table: (N, T)
    assert x.dtype == np.float64 and x.shape == (4, 5, 1) and lengths is None
    np.testing.assert_array_equal(x[:, :, 0], x3[:, :, 0])
    seqs = [rng.standard_normal((t, 3)) for t in (2, 5, 1)]
    x, lengths = as_sequences(seqs)
    assert x.shape == (3, 5, 3) and lengths.tolist() == [2, 5, 1]
    assert lengths.dtype == np.int64 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[0, :2], seqs[0].astype(np.float32))
    assert not x[0, 2:].any()                                        # padded with zeros
    x, lengths = as_sequences([np.ones(3), np.ones(1)])              # univariate, ragged
    assert x.shape == (2, 3, 1) and lengths.tolist() == [3, 1]
    x, lengths = as_sequences([np.ones((3, 2)), np.ones((3, 2))])    # equal: no lengths
    assert x.shape == (2, 3, 2) and lengths is None


def test_ragged_list_is_run_with_lengths():
    """A list of sequences of different lengths: each prediction is the one of the sequence
    alone, and the same as a padded array (of any padding values) with lengths."""
    rng = np.random.default_rng(1)
    seqs = [rng.standard_normal((t, 2)) for t in rng.integers(1, 9, size=30)]
    y = np.array([s[0, 0] > 0 for s in seqs])
    clf = SequenceClassifier(hidden_size=8, epochs=3, random_state=0).fit(seqs, y)
    assert clf.n_features_in_ == clf.input_size_ == 2
    proba = clf.predict_proba(seqs)
    alone = np.concatenate([clf.predict_proba([s]) for s in seqs])
    np.testing.assert_allclose(proba, alone, rtol=1e-12, atol=1e-14)
    lengths = np.array([len(s) for s in seqs])
    padded = rng.standard_normal((30, lengths.max(), 2))              # garbage past the end
    for row, s in zip(padded, seqs):
        row[:len(s)] = s
    np.testing.assert_allclose(clf.predict_proba(padded, lengths=lengths), proba,
                               rtol=1e-12, atol=1e-14)
    # fitting on the padded array with lengths is fitting on the list
    same = SequenceClassifier(hidden_size=8, epochs=3, random_state=0).fit(padded, y,
                                                                           lengths=lengths)
    np.testing.assert_allclose(same.predict_proba(seqs), proba, rtol=1e-10, atol=1e-12)


def test_n_features_in_for_tables_and_sequences():
    X, y = _sign_data(40, T=6)
    clf = SequenceClassifier(hidden_size=4, epochs=1, random_state=0).fit(X, y)
    assert clf.n_features_in_ == 6 and clf.input_size_ == 1       # a table: its columns
    with pytest.raises(ValueError, match="X has 5 features, but SequenceClassifier is "
                                         "expecting 6 features as input"):
        clf.predict(X[:, :5])
    assert clf.predict(X[:, :5, None]).shape == (40,)    # (N, T, 1) sequences of any T
    with pytest.raises(ValueError, match="X has 2 feature.s. per step, but SequenceClassifier "
                                         "is expecting 1 feature.s. per step"):
        clf.predict(np.zeros((3, 6, 2)))
    clf.fit(np.zeros((8, 6, 3)), y[:8])                  # 3-D: the features per step
    assert clf.n_features_in_ == clf.input_size_ == 3
    with pytest.raises(ValueError, match="X has 2 feature.s. per step, but SequenceClassifier "
                                         "is expecting 3"):
        clf.predict(np.zeros((3, 6, 2)))


# ------------------------------------------------------------------------------------------
# the classifier and the regressor


def test_classifier_labels_and_probabilities():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 4, 2))
    labels = np.array(["cat", "dog", "emu"])[(X[:, 0, 0] > 0).astype(int) + (X[:, 0, 1] > 0)]
    clf = SequenceClassifier(hidden_size=8, epochs=2, random_state=0).fit(X, labels)
    assert clf.classes_.tolist() == ["cat", "dog", "emu"]
    proba = clf.predict_proba(X)
    assert proba.shape == (60, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-10)
    # binary: two columns, as for more classes
    binary = SequenceClassifier(hidden_size=4, epochs=1, random_state=0).fit(X, labels == "dog")
    assert binary.classes_.tolist() == [False, True]
    assert binary.predict_proba(X).shape == (60, 2)
    assert 0.0 <= binary.score(X, labels == "dog") <= 1.0


def test_regressor_outputs_and_score():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 5, 1))
    y = 50.0 + 10.0 * X[:, -1, 0]                         # the last step, in other units
    reg = SequenceRegressor(hidden_size=8, epochs=30, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (200,) and reg.predict(X).dtype == np.float64
    assert reg.score(X, y) > 0.9
    assert reg.n_outputs_ == 1 and list(reg.history_.history)[0] == "loss"
    y2 = np.stack([y, -y], axis=1)
    reg2 = SequenceRegressor(hidden_size=4, epochs=1, random_state=0).fit(X, y2)
    assert reg2.n_outputs_ == 2 and reg2.predict(X).shape == (200, 2)


def test_partial_fit_and_warm_start():
    X, y = _sign_data(64, T=5)
    clf = SequenceClassifier(hidden_size=4, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, np.zeros(64, bool))           # one label, no classes: too few
    clf.partial_fit(X[:32], y[:32], classes=[False, True])
    clf.partial_fit(X[32:], y[32:])
    assert clf.n_iter_ == 2 and clf.history_.epochs == 2
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] not in the classes"):
        clf.partial_fit(X[:2], [7, 7])
    # warm_start: fit goes on from the fitted weights, and n_iter_ adds up
    warm = SequenceClassifier(hidden_size=4, epochs=2, warm_start=True, random_state=0)
    warm.fit(X, y)
    first = warm.history_.history["loss"]
    warm.fit(X, y)
    assert warm.n_iter_ == 4 and warm.history_.history["loss"][0] < first[0]
    warm.set_params(hidden_size=5)
    with pytest.raises(ValueError, match="hidden_size: the fitted model has hidden_size=4"):
        warm.fit(X, y)
    warm.set_params(warm_start=False).fit(X, y)              # anew: the new architecture
    assert warm.n_iter_ == 2 and warm.model_.rnn.hidden_size == 5


def test_early_stopping_holds_out_validation_data():
    X, y = _sign_data(100, T=4)
    clf = SequenceClassifier(hidden_size=4, epochs=40, early_stopping=True,
                             n_iter_no_change=2, lr=0.05, random_state=0).fit(X, y)
    history = clf.history_
    assert "val_loss" in history.history and history.monitor == "val_loss"
    assert clf.n_iter_ == history.epochs <= 40
    with pytest.raises(ValueError, match="validation_fraction"):
        clf.set_params(validation_fraction=0.001).fit(X, y)


def test_verbose_shows_progress(capsys):
    X, y = _sign_data(20, T=3)
    SequenceClassifier(hidden_size=2, epochs=2, verbose=True, random_state=0).fit(X, y)
    assert "epoch 2/2" in capsys.readouterr().err         # tqdm, or one line per epoch
    SequenceClassifier(hidden_size=2, epochs=2, random_state=0).fit(X, y)
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------
# bad input


def test_bad_input_names_the_argument():
    X, y = _sign_data(20, T=3)
    clf = SequenceClassifier(hidden_size=2, epochs=1, random_state=0)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X: Input X contains NaN"):
        clf.fit(bad, y)
    with pytest.raises(ValueError, match="Reshape your data"):
        clf.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="4-D array"):
        clf.fit(X[:, :, None, None], y)
    with pytest.raises(ValueError, match=r"y: found 19 target\(s\) for 20 sequence"):
        clf.fit(X, y[:-1])
    with pytest.raises(ValueError, match="requires y to be passed"):
        clf.fit(X, None)
    with pytest.raises(ValueError, match="same number of features per step"):
        clf.fit([np.ones((2, 3)), np.ones((2, 2))], [0, 1])
    with pytest.raises(ValueError, match=r"X\[1\]: a sequence needs at least one step"):
        clf.fit([np.ones((2, 3)), np.ones((0, 3))], [0, 1])
    with pytest.raises(ValueError, match="lengths: a list X of sequences carries its own"):
        clf.fit([np.ones((2, 3)), np.ones((1, 3))], [0, 1], lengths=[2, 1])
    with pytest.raises(ValueError, match=r"lengths: each length must be in \[1, T\]"):
        clf.fit(X, y, lengths=np.full(20, 4))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(N,\)"):
        clf.fit(X, y, lengths=[3, 3])
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse input is not supported"):
        clf.fit(scipy_sparse.csr_matrix(X), y)


@pytest.mark.parametrize("param, value, error, words", [
    ("cell", "transformer", ValueError, "cell: expected one of 'lstm', 'gru', 'rnn'"),
    ("cell", 3, TypeError, "cell: expected one of"),
    ("hidden_size", 0, ValueError, "hidden_size: expected an integer >= 1, got 0"),
    ("hidden_size", 2.5, TypeError, "hidden_size: expected an integer"),
    ("epochs", True, TypeError, "epochs: expected an integer"),
    ("lr", -1.0, ValueError, r"lr: expected a number in \(0.0, inf\)"),
    ("optimizer", "rmsprop", ValueError, "optimizer: expected one of 'adam', 'sgd'"),
    ("clip_norm", 0, ValueError, "clip_norm"),
    ("validation_fraction", 1.5, ValueError, "validation_fraction"),
    ("dropout", 1.0, ValueError, "dropout"),
    ("early_stopping", "yes", TypeError, "early_stopping: expected True or False"),
    ("dtype", "float16", ValueError, "dtype: expected 'float32' or 'float64'"),
    ("n_threads", 0, ValueError, "n_threads: expected a positive integer or -1"),
    ("backend", "cuda", ValueError, "backend: unknown or unavailable backend 'cuda'"),
])
def test_bad_parameters_are_reported_by_fit(param, value, error, words):
    X, y = _sign_data(10, T=2)
    clf = SequenceClassifier(epochs=1).set_params(**{param: value})    # stored as given
    assert clf.get_params()[param] is value
    with pytest.raises(error, match=words):
        clf.fit(X, y)


# ------------------------------------------------------------------------------------------
# pickling, cloning, meta-estimators, the contract fastlstm.dask relies on


def test_pickle_and_clone():
    X, y = _sign_data(40, T=5)
    reg = SequenceRegressor(cell="gru", hidden_size=6, epochs=2, random_state=0)
    reg.fit(X, X[:, 0])
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))  # packed weights rebuilt
    again.partial_fit(X, X[:, 0])                                     # and it trains on
    assert again.n_iter_ == 3 and reg.n_iter_ == 2
    fresh = clone(reg)
    assert fresh.get_params() == reg.get_params() and not hasattr(fresh, "model_")


def test_pipeline_and_grid_search_with_two_jobs():
    X, y = _sign_data(60, T=6)
    pipe = make_pipeline(FunctionTransformer(lambda a: 2.0 * a),
                         SequenceClassifier(hidden_size=4, epochs=2, random_state=0))
    assert pipe.fit(X, y).predict(X).shape == (60,)
    grid = GridSearchCV(SequenceClassifier(epochs=2, random_state=0),
                        {"hidden_size": [2, 4], "cell": ["lstm", "gru"]}, cv=2, n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid.fit(X[:, :, None], y)                       # 3-D X through sklearn's indexing
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.best_estimator_.model_.rnn.hidden_size == grid.best_params_["hidden_size"]


def test_dask_contract_model_and_chunks():
    """What fastlstm.dask relies on: model_ (a ManyToOne, batch_first=True), classes_, and
    predict / predict_proba on any chunk of rows of (N, T, I) float arrays."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 7, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    clf = SequenceClassifier(hidden_size=5, epochs=2, random_state=0).fit(X, y)
    assert isinstance(clf.model_, fastlstm.ManyToOne) and clf.model_.rnn.batch_first
    assert clf.classes_.tolist() == [0, 1, 2]
    whole = clf.predict_proba(X)
    chunks = np.concatenate([clf.predict_proba(X[i:i + 16]) for i in range(0, 50, 16)])
    np.testing.assert_allclose(chunks, whole, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(
        np.concatenate([clf.predict(X[i:i + 16]) for i in range(0, 50, 16)]), clf.predict(X))
    x, lengths = as_sequences(X)
    np.testing.assert_array_equal(x, X)
    # the head's output, by hand, is what predict_proba's softmax reads
    logits = clf.model_(x.astype(clf.model_.dtype))
    np.testing.assert_array_equal(logits.argmax(axis=1), clf.predict(X))


def test_threads_setting():
    X, y = _sign_data(30, T=4)
    a = SequenceClassifier(hidden_size=4, epochs=1, random_state=0, n_threads=1).fit(X, y)
    b = SequenceClassifier(hidden_size=4, epochs=1, random_state=0, n_threads=-1).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-10)
