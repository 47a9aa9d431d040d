"""The registry of backends: a name, a loader, and the same kernel contract for every cell.

Each backend offers
    groups(n_threads, B, cell, H, Hout, dtype): how many groups of batch rows its time loop
        runs (one per thread); 1 for one group, which the Cython kernels also use for their
        column split (the threads share every step)
    forward(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work, n_threads,
            packed=None)   (packed: a fastlstm._api.PackedLayer of these weights, or None)
    backward(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp, dx,
             dw_ih, dw_hh, db_ih, db_hh, work, n_groups, n_threads)
with the buffers of src/kernels/CONTRACT.md: the caller (fastlstm._api) allocates every output
and scratch array, the backend only fills them.
Backends load lazily on first use, so importing fastlstm does not import Numba.
"""
import importlib
import os

import numpy as np

from . import _isa, _reduced
from ._numpy_backend import NumpyBackend

#: every backend fastlstm knows, fastest first
BACKEND_NAMES = ("cython", "numba", "numpy")
ENV_VAR = "FASTLSTM_BACKEND"
#: "0" keeps the reduced-precision kernels off the dot-product instructions (CythonBackend)
DOT_ENV_VAR = "FASTLSTM_DOT_PRODUCTS"


class CythonBackend:
    """src/kernels/recurrent_forward.pyx and recurrent_backward.pyx: one group of batch rows
    per OpenMP thread, or for small batches the column split, forward and backward (the rule
    in src/kernels/_layout.pxd, column_threads); built once per x86-64 level; `level`
    (default: fastlstm._isa's choice, $FASTLSTM_ISA or the best this CPU runs) picks the
    build."""

    name = "cython"
    #: forward() takes caller_x, y, perm and reverse: the kernel moves an inference call's
    #: rows into and out of loop order itself (CONTRACT.md)
    moves_rows = True
    #: its threads are OpenMP's: the Python layer's parallel row copies share them
    uses_openmp = True

    def __init__(self, level=None):
        self.level = level or _isa.chosen_level()
        #: the level's compiled modules (the streams use their step plans and scratch lengths)
        self.forward_module = _isa.kernel_module("recurrent_forward", self.level)
        self.info = _isa.kernel_module("_info", self.level)
        self._bwd = _isa.kernel_module("recurrent_backward", self.level).backward
        self._fwd_scratch = self.info.forward_scratch_length
        self._bwd_scratch = self.info.backward_scratch_length
        self._column_threads = self.info.column_threads
        self._reduced = None   # recurrent_quantized, loaded at the first reduced-precision call
        self._dot = None

    @property
    def reduced_module(self):
        """The level's reduced-precision driver (src/kernels/recurrent_quantized.pyx)."""
        if self._reduced is None:
            self._reduced = _isa.kernel_module("recurrent_quantized", self.level)
        return self._reduced

    def dot_products(self):
        """{"int8": bool, "bfloat16": bool}: whether the reduced-precision driver uses the
        dot-product instructions (vpdpbusd, vdpbf16ps): the build has them and the CPU runs
        them, and $FASTLSTM_DOT_PRODUCTS is not "0" (which keeps the plain AVX2 / SSSE3
        paths, to measure or test them on a CPU that has both)."""
        if self._dot is None:   # the build's and the CPU's, found once
            built = self.reduced_module.dot_paths()
            features = _isa.cpu_features()
            cpu = {"int8": features.get("avx512_vnni", False) if self.level == "x86-64-v4"
                   else features.get("avx_vnni", False),
                   "bfloat16": features.get("avx512_bf16", False)}
            self._dot = {p: bool(built[p] and cpu[p]) for p in built}
        allowed = os.environ.get(DOT_ENV_VAR, "").strip() != "0"
        return {p: usable and allowed for p, usable in self._dot.items()}

    def groups(self, n_threads, B, cell, H, Hout, dtype):
        if n_threads == 1:
            return 1
        if self._column_threads(cell, B, Hout, H, dtype.itemsize, n_threads):
            return 1   # the forward's column split: the rows are one group
        return max(1, min(n_threads, B))

    def forward(self, cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work,
                n_threads, packed, rows=None):
        """packed (every call has one: fastlstm._api.run_layer): the fastlstm._api.PackedLayer
        holding these weights, whose ForwardPlan for this call's decomposition (the weights
        packed for it) is made once and then reused (its scratch dict: {columns: plan}); or a
        fastlstm._reduced.ReducedLayer (int8, bfloat16), run by recurrent_quantized (which
        takes no rows). rows: None, or (caller_x, y, perm, reverse) for ForwardPlan.run: x is
        then the loop-order buffer that the kernel fills from caller_x, and y receives the
        outputs in time order."""
        if packed.precision:
            self._forward_reduced(cell, x, packed, lengths, h, c, gates, work, n_threads)
            return
        _, B, I = x.shape
        Hout, H = w_hh.shape[1], w_hr.shape[1]
        # the decomposition groups() chose: its plan (the weights packed for it) is made once
        # and published only when made (another thread may be running the older ones)
        columns = int(n_threads > 1 and self._column_threads(cell, B, Hout, H,
                                                             x.dtype.itemsize, n_threads) > 0)
        plan = packed.scratch.get(columns)
        if plan is None:
            scratch = np.empty(self._fwd_scratch(cell, I, Hout, H, w_hr.shape[0],
                                                 x.dtype.itemsize), dtype=x.dtype)
            plan = self.forward_module.ForwardPlan(cell, w_ih, w_hh, w_hr, bias, peep, scratch,
                                                   columns, n_threads)
            packed.scratch[columns] = plan
        if rows is None:
            plan.run(x, lengths, h, c, gates, work, n_threads)
        else:
            plan.run(x, lengths, h, c, gates, work, n_threads, *rows)

    def _forward_reduced(self, cell, x, layer, lengths, h, c, gates, work, n_threads):
        """recurrent_quantized.forward on a ReducedLayer's panels; its activation scratch is
        kept in the layer per (K, B, team)."""
        module = self.reduced_module
        _, B, I = x.shape
        H, P = layer.w_hr.shape[1], layer.w_hr.shape[0]
        K, Hout = gates.shape[0], h.shape[2]
        code = _reduced.PRECISION_CODES[layer.precision]
        team = max(1, min(n_threads, -(-H // _reduced.PANEL_ROWS)))
        key = ("act", K, B, team)
        act = layer.scratch.pop(key, None)   # taken: a concurrent call makes its own
        if act is None:
            act = np.empty(module.activation_scratch_bytes(code, K, B, I, Hout, H, team),
                           np.uint8)
        dot = self.dot_products()[layer.precision]
        ih, hh, hr = layer.panels["ih"], layer.panels["hh"], layer.panels["hr"]
        try:
            module.forward(cell, code, dot, x, *ih, *hh, *hr, layer.bias, layer.peep, lengths,
                           h, c, gates, work, act, H, P, n_threads)
        finally:
            layer.scratch[key] = act

    def backward(self, cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA,
                 dhp, dx, dw_ih, dw_hh, db_ih, db_hh, work, n_groups=1, n_threads=1,
                 columns=-1):
        """columns: as the kernel's (-1: its rule; 0: never the column split; 1: always, which
        needs n_groups=1). With one group of rows and several threads the walk may take the
        split, so the scratch then has room for its buffers (column_rows = B)."""
        T, B, I = x.shape
        may_split = n_groups == 1 and (columns > 0 or (columns < 0 and n_threads > 1))
        scratch = np.empty(self._bwd_scratch(cell, T * B, I, w_hh.shape[1], w_hr.shape[1],
                                             w_hr.shape[0], x.dtype.itemsize, n_threads,
                                             B if may_split else 0),
                           dtype=x.dtype)
        self._bwd(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp,
                  dx, dw_ih, dw_hh, db_ih, db_hh, work, scratch, n_groups, n_threads, columns)


class NumbaBackend:
    """src/kernels/numba_recurrent_forward.py and numba_recurrent_backward.py: the batch as
    one group; a large forward shared by a team of threads, by slices of the hidden units or
    by groups of rows (numba_recurrent_forward.team_size, by_rows), a large backward's walk
    the same two ways; every product on panels (numba_panels.py; no BLAS)."""

    name = "numba"

    def __init__(self):
        forward_module = importlib.import_module("fastlstm._kernels.numba_recurrent_forward")
        self._fwd, self.layer_panels = forward_module.forward, forward_module.layer_panels
        self._bwd = importlib.import_module("fastlstm._kernels.numba_recurrent_backward").backward

    @staticmethod
    def groups(n_threads, B, cell, H, Hout, dtype):
        return 1

    def forward(self, cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work,
                n_threads=1, packed=None, panels=None):
        """packed: the fastlstm._api.PackedLayer of these weights, which keeps their panels
        (numba_recurrent_forward.layer_panels) in its scratch dict once made; or None, with
        panels: layer_panels of these weights (a stream's), or None (packed here, for this
        call)."""
        if packed is not None and packed.precision:
            raise ValueError(f"backend: the numba backend has no {packed.precision} kernels; "
                             f"use backend='cython' (or 'numpy', the reference)")
        if packed is not None:
            panels = packed.scratch.get("numba")
            if panels is None:
                panels = self.layer_panels(cell, w_ih, w_hh, w_hr)
                packed.scratch["numba"] = panels
        self._fwd(cell, x, w_ih, w_hh, w_hr, bias, peep, lengths, h, c, gates, work, n_threads,
                  panels=panels)

    def backward(self, cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA,
                 dhp, dx, dw_ih, dw_hh, db_ih, db_hh, work, n_groups=1, n_threads=1):
        self._bwd(cell, x, w_ih, w_hh, w_hr, peep, lengths, h, c, gates, dy, dh, dc, dA, dhp,
                  dx, dw_ih, dw_hh, db_ih, db_hh, work, n_threads)


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
        # a ValueError (a bad $FASTLSTM_ISA) is the caller's to see, at every call
    return _loaded.get(name)


def _cython_info():
    """The Cython kernels' _info module, or None where they do not load."""
    cython = _loaded.get("cython")
    if cython is None:
        try:
            cython = _load("cython")
        except ValueError:   # a bad $FASTLSTM_ISA: the cython backend's calls report it
            cython = None
    return None if cython is None else cython.info


def same_bytes_function():
    """same_bytes(a, b) for two C-contiguous arrays: the Cython kernels' (one memcmp), or
    NumPy's comparison where they do not load."""
    info = _cython_info()
    if info is not None:
        return info.same_bytes
    from ._functional_packs import numpy_same_bytes

    return numpy_same_bytes


def all_same_function():
    """all_same(values, copies) (fastlstm/_functional_packs.py): the Cython kernels' (one
    call, a memcmp per array), or NumPy's comparison where they do not load."""
    info = _cython_info()
    if info is not None:
        return info.all_same
    from ._functional_packs import numpy_all_same

    return numpy_all_same


def copy_rows_function():
    """copy_rows(src, index, dst, n_threads) (the Cython kernels' _info.copy_rows: rows copied
    by an index, zeros for -1), or None where they do not load (fastlstm/_loop_order.py then
    moves the rows with NumPy)."""
    info = _cython_info()
    return None if info is None else info.copy_rows


def available_backends():
    """Names of the backends that load here, fastest first, e.g. ("cython", "numba", "numpy")."""
    return tuple(name for name in BACKEND_NAMES if _load(name) is not None)


def unavailable_backends():
    """{name: why} for the backends that failed to load."""
    available_backends()
    return dict(_failures)


def get_backend(name="auto"):
    """The backend object for `name`; "auto" means $FASTLSTM_BACKEND, else the fastest available."""
    # the common calls first, without building the list of available backends (every call
    # of the API comes here: a few microseconds matter for one-step calls)
    if name == "auto":
        env = os.environ.get(ENV_VAR)
        if not env or not env.strip():
            for candidate in BACKEND_NAMES:
                backend = _loaded.get(candidate)
                if backend is not None:
                    return backend
                if candidate not in _failures:
                    break   # not tried yet: the general path below loads it
    elif type(name) is str:
        backend = _loaded.get(name)
        if backend is not None:
            return backend
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
