"""Compiled kernels of fastlstm (installed as fastlstm._kernels).

One file per cell and direction of work. Every kernel follows one contract: the Python layer
(fastlstm._api) checks arguments and allocates outputs and scratch; a kernel only fills them,
runs its whole time loop in compiled code and never allocates inside that loop.

- CONTRACT.md: the buffers every backend's forward and backward fill, the cell codes, loop
  order (reverse and lengths, which the Python layer arranges once for every backend).
- recurrent_forward.pyx / recurrent_backward.pyx: Cython, GIL released, one group of batch rows
  per OpenMP thread; one time loop for every cell, whose pointwise math lives in
  _lstm_cell.pxd, _gru_cell.pxd, _rnn_cell.pxd; _gemm.h (+ _gemm_impl.h, declared in
  _gemm.pxd): their matrix products, a register-blocked micro-kernel over packed weight
  panels in C with GCC vector extensions (no BLAS); _layout.pxd: cell codes and scratch
  lengths; _activations.pxd: vectorisable sigmoid and tanh.
- numba_recurrent_forward.py / numba_recurrent_backward.py: the Numba twins, with BLAS for the
  matrix products; numba_cells.py: the cells' pointwise math; numba_activations.py: the twin
  of _activations.pxd.
- _info.pyx: build facts (OpenMP, vector width) for fastlstm.show_config(), and the scratch
  lengths the Cython kernels need.
- _cpu.pyx: CPUID and XGETBV, the features behind the x86-64 levels.

setup.py builds recurrent_forward, recurrent_backward and _info once per x86-64 level, as
<name>_x86_64_v2, <name>_x86_64_v3 and <name>_x86_64_v4 (off x86: <name>_portable); each
level's _gemm.h picks its own vector width and panel shape from the compiler's macros.
fastlstm/_isa.py chooses the level at run time (FASTLSTM_ISA forces one).
"""
