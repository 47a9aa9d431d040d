"""Compiled kernels of fastlstm (installed as fastlstm._kernels).

One file per cell and direction of work. Every kernel follows one contract: the Python layer
(fastlstm._api) checks arguments and allocates outputs and scratch; a kernel only fills them,
runs its whole time loop in compiled code and never allocates inside that loop.

- lstm_forward.pyx / lstm_backward.pyx: Cython, GIL released, one group of batch rows per
  OpenMP thread; _gemm.h (+ _gemm_impl.h, declared in _gemm.pxd): their matrix products, a
  register-blocked micro-kernel over packed weight panels in C with GCC vector extensions
  (no BLAS); _activations.pxd: their vectorisable sigmoid and tanh.
- numba_lstm_forward.py / numba_lstm_backward.py: Numba twins of the Cython kernels, with BLAS
  (np.dot) for the matrix products; numba_activations.py: the twin of _activations.pxd.
- _info.pyx: build facts (OpenMP, vector width) for fastlstm.show_config(), and the scratch
  lengths the Cython kernels need.
"""
