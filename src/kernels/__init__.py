"""Compiled kernels of fastlstm (installed as fastlstm._kernels).

One file per cell and direction of work. Every kernel follows one contract: the Python layer
(fastlstm._api) checks arguments and allocates outputs and scratch; a kernel only fills them,
runs its whole time loop in compiled code and never allocates inside that loop.

- lstm_forward.pyx / lstm_backward.pyx: Cython, BLAS from scipy.linalg.cython_blas, GIL released.
- numba_lstm_forward.py / numba_lstm_backward.py: Numba twins of the Cython kernels.
- _blas.pxd: the row-major BLAS shim shared by the Cython kernels.
- _info.pyx: build facts (OpenMP) for fastlstm.show_config().
"""
