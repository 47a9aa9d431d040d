# One step through a stack's layers, for a kernel module's StepPlan: included (textually) by
# recurrent_forward.pyx and recurrent_quantized.pyx, each of which defines its own StepPlan
# (cdef methods _takes and _step, attributes n_in and Hout) and cimports numpy as cnp.


def run_steps(list plans, x, list outs, int n_threads=1):
    """One step through a stack's layers: plans[l].step(input, outs[l]) with layer 0's input
    x (B, I) and layer l's the output of layer l - 1, then a new array (B, Hout): a copy of
    the last output. None, with nothing run, when x is not an array StepPlan.step takes in
    place (C-contiguous (B, I), aligned, native-order, the plans' dtype): the caller then
    checks x and takes its general path. outs[l] (B, Hout) as plans[l].step's y."""
    cdef Py_ssize_t l, L = len(plans)
    if L == 0 or len(outs) != L:
        raise ValueError(f"run_steps: one output per plan expected, got {L} plans and "
                         f"{len(outs)} outputs")
    cdef StepPlan plan = plans[0]
    if not plan._takes(x, plan.n_in, False):
        return None
    for l in range(L):
        plan = plans[l]
        y = outs[l]
        if not plan._takes(x, plan.n_in, False) or not plan._takes(y, plan.Hout, True):
            raise ValueError(f"run_steps: layer {l}: its input or output array does not fit "
                             f"its plan")
        plan._step(<cnp.ndarray>x, <cnp.ndarray>y, n_threads)
        x = y
    return cnp.PyArray_NewCopy(<cnp.ndarray>x, cnp.NPY_CORDER)
