"""scikit-learn estimators for sequences: fastlstm.ManyToOne(rnn, Linear) trained by
fastlstm.fit (no other training loop), behind scikit-learn's estimator API.

    from fastlstm.sklearn import SequenceClassifier, SequenceRegressor
    clf = SequenceClassifier(cell="lstm", hidden_size=32, epochs=100, random_state=0)
    clf.fit(X, y)                    # y: labels of any type (N,)
    clf.predict(X); clf.predict_proba(X); clf.score(X, y)      # accuracy
    clf.partial_fit(X, y, classes=[0, 1])                      # one epoch, going on
    reg = SequenceRegressor(cell="gru").fit(X, y)              # y (N,) or (N, n_outputs)
    reg.predict(X); reg.score(X, y)                            # R^2

Needs scikit-learn (>= 1.3): pip install "fastlstm[sklearn]". `import fastlstm` does not
import this subpackage.

X, the sequences (N of them, T steps, I features per step), in any of these forms:

    (N, T, I) float array      as it is
    (N, T) array or table      N univariate sequences of T steps (I = 1): scikit-learn's
                               tabular X (n_samples, n_features) reads as sequences
    list of N (T_i, I) arrays  sequences of different lengths: padded to T = max T_i and run
                               with lengths = the T_i, so fastlstm skips the padded steps
                               (a list of 1-D arrays of different lengths: univariate ones)

fit, partial_fit, predict and predict_proba also take lengths=(N,) for an (N, T, I) or (N, T)
array that is already padded. as_sequences(X) (fastlstm/sklearn/_data.py) is this reading:
X -> (x (N, T, I) float32 (or dtype=...), lengths (N,) int64 or None).

Model and training. model_ = ManyToOne(rnn, head): rnn = fastlstm.LSTM / GRU / RNN(I,
hidden_size, num_layers, batch_first=True, dropout, bidirectional), head = Linear(D * H,
n_classes or n_outputs); the head reads the last layer's final state (each row's own last
valid step). fastlstm.fit trains it: cross-entropy over the classes (the classifier;
predict_proba is the softmax of the head's output, so each row sums to 1, for two classes as
for more) or the mean squared error on standardized targets (the regressor), Adam or SGD with
lr, gradient clipping (clip_norm), mini-batches of batch_size, and with early_stopping a
held-out validation_fraction (stratified for the classifier), stopping after
n_iter_no_change epochs without a lower validation loss and restoring the best weights.

The defaults (an LSTM of 32 units with its forget-gate bias at 1, 100 epochs of Adam at lr
3e-3 in batches of 32, clip_norm 1.0, float64, one thread) learn small tasks in seconds: on
the sign of the first of 20 steps (X ~ N(0, 1) of shape (N, 20) or (N, 20, 1), y = X[:, 0] >
0) the classifier reaches 0.998 held-out accuracy from 1000 training sequences in about 2 s
(tests/test_sklearn.py asserts >= 0.9). float64 is the default because scikit-learn's checks
ask that a row's prediction not depend on the other rows of the batch to 1e-9; float32
(dtype="float32") keeps that to ~1e-6 only (its products sum in a batch-dependent order).

Attributes after fitting (stable; fastlstm.dask relies on them): model_ (the fitted
ManyToOne, its rnn batch_first=True), classes_ (the classifier's sorted labels; the head's
output k is classes_[k]), n_features_in_, input_size_ (I), feature_names_in_ (a DataFrame's
string columns), history_ (fastlstm's History), n_iter_ (epochs trained), optimizer_.
predict(X) and predict_proba(X) work on any chunk of rows: each row's result does not depend
on the others (float64: to ~1e-15).

n_features_in_: I (features per step) after fitting on a 3-D array or a list; after fitting on
a 2-D X (N, T), T, its number of columns, as scikit-learn means it for a table; a 2-D X given
later must then have T columns (ValueError "X has 9 features, but SequenceClassifier is
expecting 10 features as input"); a 3-D or list X must have the same I.

Errors: a TypeError or ValueError naming the argument (X, y, lengths, classes, or the
constructor parameter, checked by fit as scikit-learn's contract asks): NaN or infinity in X
or y, a 1-D X, a sparse X, complex numbers, a wrong number of features at predict, y of
another length than X, fewer than two classes.

scikit-learn's check_estimator: both estimators pass every check of
sklearn.utils.estimator_checks.check_estimator with their default parameters (scikit-learn
1.9: 55 checks for the classifier, 53 for the regressor; the DataFrame ones run when pandas
is installed, check_array_api_input when SCIPY_ARRAY_API=1 is set, and pass then too), none
marked as expected to fail: the (N, T) reading turns the checks' tabular X into univariate
sequences, and the tags say that 3-D X is accepted (and multi-output y, by the regressor).
XFAIL_CHECKS, the checks that would not apply to sequence models, is therefore empty; pass it
as check_estimator(est, expected_failed_checks=XFAIL_CHECKS) (the _xfail_checks tag carries
it before scikit-learn 1.6).

They pickle, clone, and work in a Pipeline and in GridSearchCV(n_jobs > 1) (n_threads=1 keeps
the parallel fits from competing for the CPUs). A pickled or copied layer packs its weights
again at its first call (fastlstm/layers/_packing.py: packed panels are never copied).
"""
try:
    import sklearn  # noqa: F401  (only to say clearly when it is missing)
except ImportError as exc:
    raise ImportError('fastlstm.sklearn needs scikit-learn, which is not installed: '
                      'pip install "fastlstm[sklearn]" (or pip install scikit-learn)') from exc

from ._compat import VERSION as _SKLEARN_VERSION

if _SKLEARN_VERSION < (1, 3):                               # pragma: no cover
    raise ImportError(f"fastlstm.sklearn needs scikit-learn >= 1.3, found "
                      f"{'.'.join(map(str, _SKLEARN_VERSION))}: "
                      f'pip install "fastlstm[sklearn]" (or pip install -U scikit-learn)')

from ._compat import XFAIL_CHECKS  # noqa: E402
from ._data import as_sequences  # noqa: E402
from ._estimators import SequenceClassifier, SequenceRegressor  # noqa: E402

__all__ = ["SequenceClassifier", "SequenceRegressor", "as_sequences", "XFAIL_CHECKS"]
