"""predict, predict_proba and transform on dask arrays: one task per chunk of X, each running
the in-process call on its chunk with the model that reached its worker once.

    out = fastlstm.dask.predict(model, X)          # a dask array, chunked as X's batch axis
    proba = fastlstm.dask.predict_proba(model, X)
    feats = fastlstm.dask.transform(model, X, output="state")

model, and what each function gives for a chunk x (NumPy, the chunk's n rows):

    an estimator (fastlstm.sklearn's SequenceClassifier / SequenceRegressor, or any object
    with predict / predict_proba):
        predict        est.predict(x)                       (n,) or (n, k)
        predict_proba  est.predict_proba(x)                 (n, n_classes)
        transform      est.transform(x) where it has one, else transform(est.model_.rnn, x)
                       on x read as the estimator reads it (fastlstm.sklearn._data.
                       as_sequences(x, dtype=the model's))
    a fitted structure (fastlstm.ManyToOne, ManyToMany, OneToMany):
        predict        model(x) (model(x, lengths=...); OneToMany: model(x0, steps))
        predict_proba  the softmax of model(x) over its last axis, as fastlstm.cross_entropy
                       computes it: np.exp(log_softmax(out))
        transform      transform(model.rnn, x)
    a layer stack (fastlstm.LSTM / GRU / RNN, or one made by m.quantize):
        transform only (a stack has no predictions), by `output`:
        "state"    (default) (n, D*H_out): the last layer's final hidden states, directions
                   concatenated (what ManyToOne's head reads): cat(h_n[-D:], axis=-1)
        "outputs"  y, in X's layout: (n, T, D*H_out) batch_first, else (T, n, D*H_out)
        "h_n"      the final hidden states of every layer, (L*D, n, H_out)
        "c_n"      the LSTM's final cell states, (L*D, n, H)

X: a dask array laid out as the model reads it (an estimator: (N, T, I) or (N, T); a structure
or stack: (N, T, I) with batch_first, else time-major (T, N, I); OneToMany: x0 (N, I)),
chunked along the batch axis only: a chunk along time (or features) is a ValueError. Chunks
are converted to the model's dtype (structures and stacks; an estimator reads them itself).
lengths (N,): a dask array chunked as X's batch axis, or a NumPy array (cut into X's chunks),
passed on with each chunk (not for OneToMany).

The model is copied once (fastlstm.dask._workers.portable_copy: in inference mode, the
caller's model untouched) into one key of the graph that every chunk's task depends on: each
worker receives it once, and a worker that dies mid-computation loses nothing: its chunks and
the model are computed again elsewhere from the graph, each chunk counted once. Each chunk's
result is the in-process call's on those rows bit for bit, and the kernels compute the rows
of a batch independently (on any number of threads), so the whole result equals the
in-process call on the whole of X. (A chunk of a single row is run as two copies of it:
NumPy's product of one row in the heads takes another BLAS path, which can round the last
bit differently.) The kernels of a task run on the worker's thread setting
(fastlstm.dask._workers.task_threads); an estimator's own n_threads applies inside it.
"""
import uuid

import numpy as np

from .._validate import check_choice
from ._arrays import as_lengths, check_batch_chunks, check_dask_array, check_numbers
from ._workers import _Shipped

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_OUTPUTS = ("state", "outputs", "h_n", "c_n")


# --------------------------------------------------------------------------------------------
# what a model is


def _structure_types():
    from ..training.structures import ManyToMany, ManyToOne, OneToMany

    return ManyToMany, ManyToOne, OneToMany


def _stack_type():
    from ..layers.modules import _StackBase

    return _StackBase


def _kind(model):
    """"structure", "stack" or "estimator" (else a TypeError naming model)."""
    if isinstance(model, _structure_types()):
        return "structure"
    if isinstance(model, _stack_type()):
        return "stack"
    if callable(getattr(model, "predict", None)) or callable(getattr(model, "transform", None)):
        return "estimator"
    raise TypeError(f"model: expected a fitted estimator (fastlstm.sklearn), a fastlstm "
                    f"structure (ManyToOne, ManyToMany, OneToMany) or a layer stack "
                    f"(fastlstm.LSTM, GRU, RNN), got {type(model).__name__}")


def _batch_axis_of_sequences(stack):
    return 0 if getattr(stack, "batch_first", True) else 1


# --------------------------------------------------------------------------------------------
# what runs on a chunk (module-level functions: they travel by reference)


def _softmax(out):
    """np.exp(log_softmax(out)) over the last axis, as fastlstm.cross_entropy computes it."""
    from ..training.losses import _log_softmax

    return np.exp(_log_softmax(out))


def _as_model_dtype(x, dtype):
    return np.ascontiguousarray(x, dtype=dtype)


def _structure_chunk(model, x, lengths, *, steps, proba):
    x = _as_model_dtype(x, model.dtype)
    if steps is not None:
        out = model.forward(x, steps)
    elif lengths is None:
        out = model.forward(x)
    else:
        out = model.forward(x, lengths=lengths)
    return _softmax(out) if proba else out


def _estimator_chunk(est, x, lengths, *, method):
    if lengths is None:
        return getattr(est, method)(x)
    return getattr(est, method)(x, lengths=lengths)


def _stack_outputs(stack, x, lengths, output):
    """transform's result for one chunk of a stack (see the module docstring)."""
    x = _as_model_dtype(x, stack.dtype)
    y, hx_n = stack.forward(x, None, lengths)
    if output == "outputs":
        return y
    h_n, c_n = hx_n if stack.kind == "lstm" else (hx_n, None)
    if output == "h_n":
        return h_n
    if output == "c_n":
        return c_n
    D = stack.num_directions
    return np.concatenate(list(h_n[-D:]), axis=-1)


def _stack_chunk(stack, x, lengths, *, output):
    return _stack_outputs(stack, x, lengths, output)


def _estimator_stack_chunk(est, x, lengths, *, output):
    """An estimator's fitted stack on the chunk, read as the estimator reads X."""
    from ..sklearn._data import as_sequences

    stack = est.model_.rnn
    seqs, seq_lengths = as_sequences(x, dtype=stack.dtype)
    return _stack_outputs(stack, seqs, seq_lengths if lengths is None else lengths, output)


def _run_chunk(x, *rest, x_axis, out_axis, empty, has_lengths):
    """One block: holder(x, lengths); `empty` for a chunk without rows. A chunk of one row
    runs as two copies of it (the first result kept): the heads' product of one row takes
    another BLAS path (gemv) than that of a batch, which may round differently."""
    lengths, holder = (rest[0], rest[1]) if has_lengths else (None, rest[0])
    rows = x.shape[x_axis]
    if rows == 0:
        return empty
    if rows > 1:
        return holder(x, lengths)
    x2 = np.concatenate([x, x], axis=x_axis)
    l2 = None if lengths is None else np.concatenate([lengths, lengths])
    out = np.asarray(holder(x2, l2))
    return np.ascontiguousarray(np.take(out, [0], axis=out_axis))


# --------------------------------------------------------------------------------------------
# the graph


def _checked_x(X, batch_axis, time_axis, shapes):
    """X checked: a dask array of numbers, of one of the `shapes` ({ndim: text}), chunked
    along batch_axis only."""
    X = check_dask_array("X", X)
    check_numbers("X", X)
    if X.ndim not in shapes:
        raise ValueError(f"X: expected shape {' or '.join(shapes.values())}, got {X.shape}")
    check_batch_chunks("X", X, batch_axis, time_axis=time_axis)
    return X


_ESTIMATOR_X = {3: "(N, T, I)", 2: "(N, T) (univariate sequences)"}


def _sequences_x(stack):
    return {3: "(N, T, I) (batch_first)" if _batch_axis_of_sequences(stack) == 0 else
            "(T, N, I) (time-major: the rnn has batch_first=False)"}


def _map(fn, model, X, lengths, options, x_axis, out_axis, name):
    """The dask array of fn(model, chunk, lengths chunk, **options) over X's chunks along
    x_axis, the results' batch on out_axis."""
    import dask
    import dask.array as da

    token = uuid.uuid4().hex
    holder = _Shipped(fn, model, options, token)
    # the output's shape and dtype, from the in-process call on one row of zeros (through
    # the holder: what it sends on is its pickled copy, not the model it has just used)
    probe_shape = list(X.shape)
    probe_shape[x_axis] = 1
    probe_len = None if lengths is None else np.full(1, X.shape[1 - x_axis], np.int64)
    probe_out = np.asarray(holder(np.zeros(probe_shape, dtype=X.dtype), probe_len))
    if probe_out.ndim <= out_axis or probe_out.shape[out_axis] != 1:
        raise ValueError(f"model: its {name} gave shape {probe_out.shape} for one sequence; "
                         f"expected one row on axis {out_axis}")
    empty_shape = list(probe_out.shape)
    empty_shape[out_axis] = 0
    empty = np.empty(empty_shape, dtype=probe_out.dtype)

    x_ind = _LETTERS[:X.ndim]
    batch = x_ind[x_axis]
    out_ind, new_axes, extra = "", {}, iter(_LETTERS[X.ndim:])
    for j, size in enumerate(probe_out.shape):
        if j == out_axis:
            out_ind += batch
        else:
            letter = next(extra)
            out_ind += letter
            new_axes[letter] = size
    args = [X, x_ind]
    if lengths is not None:
        args += [lengths, batch]
    args += [dask.delayed(holder, name=f"fastlstm-model-{token}"), None]
    return da.blockwise(_run_chunk, out_ind, *args, new_axes=new_axes, concatenate=True,
                        meta=empty, name=f"fastlstm-{name}-{token}", x_axis=x_axis,
                        out_axis=out_axis, empty=empty, has_lengths=lengths is not None)


def _structure_axes(model, steps):
    """(x batch axis, out batch axis, time axis of x) of a structure."""
    ManyToMany, ManyToOne, OneToMany = _structure_types()
    seq = _batch_axis_of_sequences(model.rnn)
    if isinstance(model, OneToMany):
        if steps is None:
            raise TypeError("steps: a OneToMany model generates `steps` outputs per "
                            "sequence; give steps=<a positive integer>")
        return 0, seq, None
    if steps is not None:
        raise TypeError(f"steps: only for a OneToMany model, not {type(model).__name__}")
    return seq, (seq if isinstance(model, ManyToMany) else 0), 1 - seq


def _check_steps(steps):
    if steps is None:
        return None
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps: expected a positive integer, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    return int(steps)


def _predict(model, X, lengths, steps, proba):
    name = "predict_proba" if proba else "predict"
    kind = _kind(model)
    steps = _check_steps(steps)
    if kind == "stack":
        raise TypeError(f"model: a layer stack ({type(model).__name__}) has no {name}; use "
                        f"fastlstm.dask.transform(model, X) for its outputs or final states, "
                        f"or a structure (fastlstm.ManyToOne(stack, head))")
    if kind == "estimator":
        if not callable(getattr(model, name, None)):
            raise TypeError(f"model: {type(model).__name__} has no {name}()"
                            + (" (a regressor gives no probabilities)" if proba else ""))
        if steps is not None:
            raise TypeError("steps: only for a OneToMany model, not an estimator")
        X = _checked_x(X, 0, 1, _ESTIMATOR_X)
        lengths = as_lengths("lengths", lengths, "X", X.chunks[0], 0)
        return _map(_estimator_chunk, model, X, lengths, {"method": name}, 0, 0, name)
    x_axis, out_axis, time_axis = _structure_axes(model, steps)
    X = _checked_x(X, x_axis, time_axis, {2: "(N, I) (x0, one input per sequence)"}
                   if steps is not None else _sequences_x(model.rnn))
    if steps is not None and lengths is not None:
        raise TypeError("lengths: a OneToMany model reads one input per sequence, it takes no "
                        "lengths")
    lengths = as_lengths("lengths", lengths, "X", X.chunks[x_axis], x_axis)
    return _map(_structure_chunk, model, X, lengths, {"steps": steps, "proba": proba},
                x_axis, out_axis, name)


def predict(model, X, *, lengths=None, steps=None):
    """The model's predictions on the chunks of X, as a dask array (see the module
    docstring): an estimator's predict, a structure's output. steps: OneToMany only."""
    return _predict(model, X, lengths, steps, proba=False)


def predict_proba(model, X, *, lengths=None, steps=None):
    """Class probabilities on the chunks of X, as a dask array: an estimator's
    predict_proba, or the softmax of a structure's output over its last axis."""
    return _predict(model, X, lengths, steps, proba=True)


def transform(model, X, *, lengths=None, output="state"):
    """A layer stack's final states or outputs on the chunks of X, as a dask array; for a
    structure its rnn's, for an estimator its own transform or its fitted stack's.

    output: "state" (default, (N, D*H_out)), "outputs" (y in X's layout), "h_n"
    ((L*D, N, H_out)) or "c_n" (LSTM, (L*D, N, H)); see the module docstring.
    """
    check_choice("output", output, _OUTPUTS)
    kind = _kind(model)
    if kind == "estimator":
        X = _checked_x(X, 0, 1, _ESTIMATOR_X)
        lengths = as_lengths("lengths", lengths, "X", X.chunks[0], 0)
        if callable(getattr(model, "transform", None)):
            if output != "state":
                raise ValueError(f"output: {type(model).__name__} has its own transform; "
                                 f"output={output!r} is for layer stacks")
            return _map(_estimator_chunk, model, X, lengths, {"method": "transform"}, 0, 0,
                        "transform")
        stack = getattr(getattr(model, "model_", None), "rnn", None)
        if not isinstance(stack, _stack_type()):
            raise TypeError(f"model: {type(model).__name__} has no transform() and no fitted "
                            f"stack (model_.rnn); fit it first")
        _check_output(stack, output)
        out_axis = 1 if output in ("h_n", "c_n") else 0
        if output == "outputs":
            out_axis = _batch_axis_of_sequences(stack)
        return _map(_estimator_stack_chunk, model, X, lengths, {"output": output}, 0,
                    out_axis, "transform")
    stack = model.rnn if kind == "structure" else model
    if kind == "structure" and isinstance(model, _structure_types()[2]):
        raise TypeError("model: a OneToMany model generates from one input per sequence; "
                        "transform its rnn on sequences instead: transform(model.rnn, X)")
    _check_output(stack, output)
    x_axis = _batch_axis_of_sequences(stack)
    X = _checked_x(X, x_axis, 1 - x_axis, _sequences_x(stack))
    lengths = as_lengths("lengths", lengths, "X", X.chunks[x_axis], x_axis)
    out_axis = {"state": 0, "outputs": x_axis, "h_n": 1, "c_n": 1}[output]
    return _map(_stack_chunk, stack, X, lengths, {"output": output}, x_axis, out_axis,
                "transform")


def _check_output(stack, output):
    if output == "c_n" and stack.kind != "lstm":
        raise ValueError(f"output: 'c_n' is the LSTM's cell state; a {stack.kind.upper()} has "
                         f"none (use 'h_n')")


__all__ = ["predict", "predict_proba", "transform"]
