"""fastlstm on a Dask cluster (SPEC.md section 8): batch inference on dask arrays and
data-parallel training. Needs dask and distributed: pip install "fastlstm[dask]".

    import fastlstm.dask
    proba = fastlstm.dask.predict_proba(clf, dX)           # dask arrays in, dask arrays out
    labels = fastlstm.dask.predict(clf, dX)
    feats = fastlstm.dask.transform(stack, dX, output="state")   # or "outputs", "h_n", "c_n"
    history = fastlstm.dask.fit(model, dX, dy, client=client, loss="cross_entropy",
                                optimizer=fastlstm.Adam(model.modules), epochs=10,
                                batch_size=256, seed=0)

Inference (fastlstm.dask._inference): one task per chunk of X (chunked along the batch axis
only), the model sent to each worker once; results equal the in-process call bit for bit.
Training (fastlstm.dask._training): the workers hold shards of (X, y); at each step each
computes the gradient of its part of the global mini-batch, and the sum updates the one model
on the client, so the weights equal fastlstm.fit's on the same batches and seed to float
rounding; average_every=K averages the workers' models every K steps instead. Threads on the
workers: fastlstm._threads and fastlstm.dask._workers.
"""
try:
    import dask  # noqa: F401
    import dask.array  # noqa: F401
    import distributed  # noqa: F401
except ImportError as exc:
    raise ImportError(f'fastlstm.dask needs dask (with dask.array) and distributed, which are '
                      f'not installed ({exc}): pip install "fastlstm[dask]"') from exc

from ._inference import predict, predict_proba, transform
from ._training import fit

__all__ = ["predict", "predict_proba", "transform", "fit"]
