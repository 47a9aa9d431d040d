# Flush-to-zero / denormals-are-zero for the kernels' threads (_fpmode.h): each thread that
# computes calls fl_flush_denormals() before its arithmetic and fl_restore_fpmode(old) after.
cdef extern from "_fpmode.h" nogil:
    ctypedef unsigned long fl_fpmode
    fl_fpmode fl_flush_denormals()
    void fl_restore_fpmode(fl_fpmode old)
