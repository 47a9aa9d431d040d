"""Optimizers with torch.optim's update rules: SGD (momentum, Nesterov, weight decay) and Adam
(weight decay, AMSGrad), on the NumPy parameters of fastlstm modules.

    opt = Adam([model.rnn, model.head], lr=1e-3)   # or SGD(...); one module or a list
    ...
    opt.step([grads_rnn, grads_head])              # one gradient dict per module, in order
    opt.lr = 1e-4                                  # the learning rate may change at any time

`modules`: objects with named_parameters() (an OrderedDict {state_dict key: the module's own
array}: fastlstm.LSTM / GRU / RNN, fastlstm.Linear). The optimizer asks each module for its
arrays at every step and updates them in place, so a load_state_dict() on the module between
steps is fine. Its state (momentum buffers, Adam's moments) is kept per (module, key).

`grads` for step(): one dict (when there is one module) or a list of dicts in the order of
`modules`, each keyed like its module's state_dict (the `grads` that backward returns). A
missing or unexpected key is a KeyError, a wrong shape a ValueError, each naming the entry;
everything is checked before any parameter changes. A value of None means "no gradient this
step" (the parameter and its state are left as they are, as torch does for p.grad None).
"""
import copy
import functools
import importlib
import math
import numbers
from collections.abc import Mapping

import numpy as np


def _number(name, value, low=0.0, high=None, high_open=False):
    """A real number in [low, high] (or [low, high)), else ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or math.isnan(value) or value < low or (high is not None and (
                value > high or (high_open and value == high))):
        rng = f"[{low}, {high}{')' if high_open else ']'}" if high is not None \
            else f">= {low}"
        raise ValueError(f"{name}: expected a number {rng}, got {value!r}")
    return float(value)


def _as_grad_array(name, value):
    """A gradient value (a NumPy array or a torch tensor) as an ndarray of floats."""
    if hasattr(value, "detach"):      # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float array, got dtype {arr.dtype}")
    return arr


@functools.lru_cache(maxsize=None)
def _fused_kernels():
    """fastlstm._kernels.numba_optim, or None where Numba does not load (the NumPy
    expressions then run)."""
    try:
        return importlib.import_module("fastlstm._kernels.numba_optim")
    except ImportError:
        return None


def _fusable(p, state, amsgrad):
    """Whether p and its Adam state suit the fused kernel: float32 or float64, one dtype,
    C-contiguous, writeable (else, e.g. after load_state_dict gave other arrays, NumPy's
    expressions run)."""
    arrays = [p, state["exp_avg"], state["exp_avg_sq"]]
    if amsgrad and "max_exp_avg_sq" in state:
        arrays.append(state["max_exp_avg_sq"])
    return p.dtype in (np.float32, np.float64) and all(
        isinstance(a, np.ndarray) and a.dtype == p.dtype and a.shape == p.shape
        and a.flags.c_contiguous and a.flags.writeable for a in arrays)


class _Optimizer:
    """What SGD and Adam share: the modules, the checks of `grads`, and the per-parameter
    state. A subclass defines _update(param, grad, state) and its hyperparameters."""

    _hyper = ()   # names of the hyperparameters (saved by state_dict)

    def __init__(self, modules):
        if isinstance(modules, (list, tuple)):
            modules = list(modules)
        else:
            modules = [modules]
        if not modules:
            raise ValueError("modules: expected a module or a non-empty list of modules")
        for i, m in enumerate(modules):
            if not callable(getattr(m, "named_parameters", None)):
                hint = "; for a ManyToMany / ManyToOne / OneToMany model pass model.modules" \
                    if isinstance(getattr(m, "modules", None), list) else ""
                raise TypeError(f"modules[{i}]: expected an object with named_parameters() "
                                f"(fastlstm.LSTM / GRU / RNN, fastlstm.Linear), got "
                                f"{type(m).__name__}{hint}")
        self.modules = modules
        self.state = {}          # (module index, key) -> dict of arrays and counters

    @property
    def lr(self):
        """The learning rate (settable, e.g. by a schedule between steps)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _number("lr", value)

    def _checked(self, grads):
        """[(module index, key, param, grad array or None)] after checking every entry."""
        if isinstance(grads, Mapping):
            if len(self.modules) != 1:
                raise ValueError(f"grads: expected a list of {len(self.modules)} dicts (one "
                                 f"per module, in the order of modules), got one dict")
            grads = [grads]
        elif isinstance(grads, (list, tuple)):
            if len(grads) != len(self.modules):
                raise ValueError(f"grads: expected {len(self.modules)} dicts (one per "
                                 f"module), got {len(grads)}")
        else:
            raise TypeError(f"grads: expected a dict or a list of dicts, got "
                            f"{type(grads).__name__}")
        work = []
        for i, (module, g) in enumerate(zip(self.modules, grads)):
            name = "grads" if len(self.modules) == 1 else f"grads[{i}]"
            if not isinstance(g, Mapping):
                raise TypeError(f"{name}: expected a dict keyed like the module's state_dict, "
                                f"got {type(g).__name__}")
            params = module.named_parameters()
            missing = [k for k in params if k not in g]
            unexpected = [k for k in g if k not in params]
            if missing or unexpected:
                parts = ([f"missing key(s) {missing}"] if missing else []) + \
                        ([f"unexpected key(s) {unexpected}"] if unexpected else [])
                raise KeyError(f"{name}: {'; '.join(parts)}; expected keys {list(params)}")
            for key, p in params.items():
                if g[key] is None:
                    work.append((i, key, p, None))
                    continue
                arr = _as_grad_array(f"{name}[{key!r}]", g[key])
                if arr.shape != p.shape:
                    raise ValueError(f"{name}[{key!r}]: expected shape {p.shape} (the "
                                     f"parameter's), got {arr.shape}")
                work.append((i, key, p, arr.astype(p.dtype, copy=False)))
        return work

    def step(self, grads):
        """Update every parameter in place from its gradient (see the module docstring)."""
        for i, key, p, g in self._checked(grads):
            if g is not None:
                self._update(p, g, self.state.setdefault((i, key), {}))

    def _update(self, p, g, state):
        raise NotImplementedError

    # ---------------------------------------------------------------- saving and loading
    def state_dict(self):
        """{"hyperparameters": {name: value}, "state": {(module index, key): {name: copy}}}."""
        return {"hyperparameters": {n: getattr(self, n) for n in ("lr",) + self._hyper},
                "state": copy.deepcopy(self.state)}

    def load_state_dict(self, state_dict):
        """Restore what state_dict() returned (copies; hyperparameters checked as in the
        constructor). Returns self."""
        try:
            hyper, state = state_dict["hyperparameters"], state_dict["state"]
        except (TypeError, KeyError) as exc:
            raise KeyError("state_dict: expected the keys 'hyperparameters' and 'state' "
                           "(from Optimizer.state_dict())") from exc
        for name in ("lr",) + self._hyper:
            if name not in hyper:
                raise KeyError(f"state_dict['hyperparameters']: missing key {name!r}")
        for name, value in hyper.items():
            setattr(self, name, value)
        self._check_hyper()
        self.state = copy.deepcopy(dict(state))
        return self

    def _check_hyper(self):
        pass

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in ("lr",) + self._hyper)
        return f"{type(self).__name__}({len(self.modules)} module(s), {args})"


class SGD(_Optimizer):
    """Stochastic gradient descent as torch.optim.SGD. For each parameter p with gradient g:

        g ← g + weight_decay · p                              (if weight_decay ≠ 0)
        if momentum ≠ 0:
            buf ← g                                           at the first step
            buf ← momentum · buf + (1 − dampening) · g        afterwards
            g ← g + momentum · buf    if nesterov,   else  g ← buf
        p ← p − lr · g

    With the defaults this is plain gradient descent, p ← p − lr · g (SPEC.md section 9).
    Nesterov needs momentum > 0 and dampening = 0 (ValueError otherwise, as torch).
    """

    _hyper = ("momentum", "weight_decay", "nesterov", "dampening")

    def __init__(self, modules, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
                 dampening=0.0):
        super().__init__(modules)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.dampening = dampening
        self._check_hyper()

    def _check_hyper(self):
        self.momentum = _number("momentum", self.momentum)
        self.weight_decay = _number("weight_decay", self.weight_decay)
        self.dampening = _number("dampening", self.dampening)
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected True or False, got {self.nesterov!r}")
        self.nesterov = bool(self.nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"nesterov: needs momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")

    def _update(self, p, g, state):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class Adam(_Optimizer):
    """Adam as torch.optim.Adam. For each parameter p with gradient g, at step t = 1, 2, ...:

        g ← g + weight_decay · p                     (if weight_decay ≠ 0; L2, not AdamW)
        m ← β1 · m + (1 − β1) · g                    first moment, m = 0 before step 1
        v ← β2 · v + (1 − β2) · g²                   second moment, v = 0 before step 1
        v̂ ← max(v̂, v) if amsgrad, else v̂ = v         (v̂ = 0 before step 1)
        p ← p − (lr / (1 − β1ᵗ)) · m / (sqrt(v̂) / sqrt(1 − β2ᵗ) + eps)

    Each parameter counts its own t (a step where its gradient is None does not count).
    """

    _hyper = ("betas", "eps", "weight_decay", "amsgrad")

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(modules)
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.amsgrad = amsgrad
        self._check_hyper()

    def _check_hyper(self):
        try:
            b1, b2 = self.betas
        except (TypeError, ValueError) as exc:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {self.betas!r}") \
                from exc
        self.betas = (_number("betas[0]", b1, 0.0, 1.0, high_open=True),
                      _number("betas[1]", b2, 0.0, 1.0, high_open=True))
        self.eps = _number("eps", self.eps)
        self.weight_decay = _number("weight_decay", self.weight_decay)
        if not isinstance(self.amsgrad, (bool, np.bool_)):
            raise TypeError(f"amsgrad: expected True or False, got {self.amsgrad!r}")
        self.amsgrad = bool(self.amsgrad)

    def _update(self, p, g, state):
        """One step for p; the fused Numba kernel where it applies (the same bits), else the
        NumPy expressions of _update_numpy."""
        if not state:
            self._init_state(p, state)
        kernel = _fused_kernels()
        if kernel is None or not _fusable(p, state, self.amsgrad):
            return self._update_numpy(p, g, state)
        b1, b2 = self.betas
        state["step"] += 1
        t = state["step"]
        one = p.dtype.type     # each Python float rounded to p's dtype, as NumPy does
        v_max = p              # not read without amsgrad
        if self.amsgrad:
            v_max = state.setdefault("max_exp_avg_sq", np.zeros_like(p))
        kernel.adam_update(p.reshape(-1), np.ascontiguousarray(g).reshape(-1),
                           state["exp_avg"].reshape(-1), state["exp_avg_sq"].reshape(-1),
                           v_max.reshape(-1), one(b1), one(1 - b1), one(b2), one(1 - b2),
                           one(self.weight_decay), one(self.lr / (1 - b1 ** t)),
                           one(math.sqrt(1 - b2 ** t)), one(self.eps), self.amsgrad)

    def _init_state(self, p, state):
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(p)          # m
        state["exp_avg_sq"] = np.zeros_like(p)       # v
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(p)

    def _update_numpy(self, p, g, state):
        """The update in NumPy expressions (the readable form; numba_optim.adam_update
        mirrors it)."""
        b1, b2 = self.betas
        if not state:
            self._init_state(p, state)
        state["step"] += 1
        t = state["step"]
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        if self.amsgrad:
            v_hat = state.setdefault("max_exp_avg_sq", np.zeros_like(p))
            np.maximum(v_hat, v, out=v_hat)
        else:
            v_hat = v
        step_size = self.lr / (1 - b1 ** t)
        denom = np.sqrt(v_hat) / math.sqrt(1 - b2 ** t) + self.eps
        p -= step_size * (m / denom)
