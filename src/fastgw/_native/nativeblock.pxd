# Declarations of the compiled Native block encoder (implementation: nativeblock.pyx; contract:
# nativeblock.pyi; pure-Python twin, the kinds and the layout: _pure/nativeblock.py).

# The block being written: one growing allocation, handed to Python as bytes once, at the end.
ctypedef struct Buf:
    unsigned char* p
    Py_ssize_t len
    Py_ssize_t cap


cdef int buf_grow(Buf* b, Py_ssize_t extra) except -1
cdef int put(Buf* b, const void* src, Py_ssize_t n) except -1
cdef int put_varint(Buf* b, unsigned long long n) except -1
