"""The registry of backends: a name, a loader, and the same two-function kernel contract.

Each backend offers
    forward(x, w_ih, w_hh, bias, h, c, gates, n_threads)
    backward(x, w_ih, w_hh, h, c, gates, dy, dh, dc, dA, dx, dw_ih, dw_hh, db, n_threads)
with the buffers documented in src/kernels/lstm_forward.pyx and lstm_backward.pyx: the caller
(fastlstm._api) allocates every output and scratch array, the backend only fills them.
Backends load lazily on first use, so importing fastlstm does not import Numba.
"""
import importlib
import os

import numpy as np

from . import reference

#: every backend fastlstm knows, fastest first
BACKEND_NAMES = ("cython", "numba", "numpy")
ENV_VAR = "FASTLSTM_BACKEND"


class NumpyBackend:
    """The NumPy reference behind the kernel contract (it allocates freely: it is the yardstick)."""

    name = "numpy"

    @staticmethod
    def forward(x, w_ih, w_hh, bias, h, c, gates, n_threads=1):
        hh, cc, gg = reference.lstm_forward(x, w_ih, w_hh, bias, None, h[0], c[0])
        h[1:] = hh[1:]
        T = x.shape[0]
        if c.shape[0] == T + 1:
            c[1:] = cc[1:]
        else:
            c[T % 2] = cc[-1]
        if gates.shape[0] == x.shape[0]:
            gates[...] = gg

    @staticmethod
    def backward(x, w_ih, w_hh, h, c, gates, dy, dh, dc, dA, dx, dw_ih, dw_hh, db,
                 n_threads=1):
        dA[...], dh[...], dc[...] = reference.lstm_backward_steps(
            w_hh, c, gates, dy if dy.shape[0] else None, dh, dc
        )
        dx[...], dw_ih[...], dw_hh[...], db[...] = reference.lstm_weight_grads(x, h, w_ih, dA)


class CythonBackend:
    name = "cython"

    def __init__(self):
        self._fwd = importlib.import_module("fastlstm._kernels.lstm_forward").lstm_forward
        self._bwd = importlib.import_module("fastlstm._kernels.lstm_backward").lstm_backward
        info = importlib.import_module("fastlstm._kernels._info")
        self._fwd_scratch = info.forward_scratch_length
        self._bwd_scratch = info.backward_scratch_length

    def forward(self, x, w_ih, w_hh, bias, h, c, gates, n_threads=1):
        _, _, I = x.shape
        H = w_hh.shape[1]
        scratch = np.empty(self._fwd_scratch(I, H, x.dtype.itemsize), dtype=x.dtype)
        self._fwd(x, w_ih, w_hh, bias, h, c, gates, scratch, n_threads)

    def backward(self, x, w_ih, w_hh, h, c, gates, dy, dh, dc, dA, dx, dw_ih, dw_hh, db,
                 n_threads=1):
        T, B, I = x.shape
        H = w_hh.shape[1]
        scratch = np.empty(self._bwd_scratch(T * B, I, H, x.dtype.itemsize, n_threads),
                           dtype=x.dtype)
        self._bwd(x, w_ih, w_hh, h, c, gates, dy, dh, dc, dA, dx, dw_ih, dw_hh, db, scratch,
                  min(n_threads, B), n_threads)


class NumbaBackend:
    name = "numba"

    def __init__(self):
        self._fwd = importlib.import_module("fastlstm._kernels.numba_lstm_forward").lstm_forward
        self._bwd = importlib.import_module("fastlstm._kernels.numba_lstm_backward").lstm_backward

    def forward(self, x, w_ih, w_hh, bias, h, c, gates, n_threads=1):
        rec = np.empty((x.shape[1], w_hh.shape[0]), dtype=x.dtype)
        self._fwd(x, w_ih.T, w_hh.T, bias, h, c, gates, rec)

    def backward(self, x, w_ih, w_hh, h, c, gates, dy, dh, dc, dA, dx, dw_ih, dw_hh, db,
                 n_threads=1):
        self._bwd(x, w_ih, w_hh, h, c, gates, dy, dh, dc, dA, dx, dw_ih, dw_hh, db)


_FACTORIES = {"cython": CythonBackend, "numba": NumbaBackend, "numpy": NumpyBackend}
_loaded = {}
_failures = {}


def _load(name):
    """The backend object for `name`, or None (with the reason kept) when it cannot load."""
    if name not in _loaded and name not in _failures:
        try:
            _loaded[name] = _FACTORIES[name]()
        except (ImportError, AttributeError) as exc:  # not built, or built from other sources
            _failures[name] = f"{type(exc).__name__}: {exc}"
    return _loaded.get(name)


def available_backends():
    """Names of the backends that load here, fastest first, e.g. ("cython", "numba", "numpy")."""
    return tuple(name for name in BACKEND_NAMES if _load(name) is not None)


def unavailable_backends():
    """{name: why} for the backends that failed to load."""
    available_backends()
    return dict(_failures)


def get_backend(name="auto"):
    """The backend object for `name`; "auto" means $FASTLSTM_BACKEND, else the fastest available."""
    if name == "auto":
        name = os.environ.get(ENV_VAR, "").strip() or "auto"
        source = f"${ENV_VAR}" if name != "auto" else "backend"
    else:
        source = "backend"
    available = available_backends()
    if name == "auto":
        return _load(available[0])
    if not isinstance(name, str) or name not in available:
        why = f" ({_failures[name]})" if isinstance(name, str) and name in _failures else ""
        raise ValueError(
            f"{source}: unknown or unavailable backend {name!r}{why}; "
            f"available: {', '.join(map(repr, available))} or 'auto'"
        )
    return _load(name)
