# Declarations of the compiled cache-key builder (implementation: cachekey.pyx; contract and the
# canonical form: cachekey.pyi; pure-Python twin: _pure/cachekey.py).

cdef enum:
    C_MAX_DEPTH = 256  # arrays and objects nested deeper make the body "not JSON"


# An ignore key, pointing into a bytes object the caller keeps alive.
ctypedef struct Span:
    const unsigned char* p
    Py_ssize_t n


# One member of the object being canonicalised, as offsets into the output buffer.
ctypedef struct Member:
    Py_ssize_t key  # the key's opening quote
    Py_ssize_t key_end  # just after the key's closing quote
    Py_ssize_t end  # just after the value
    bint plain  # the key's canonical text holds no escape, so it is its decoded bytes


# The canonicaliser's state. The output never outgrows the input consumed so far, so ``out``
# needs no bounds checks once it holds ``size`` bytes (see cachekey.pyx).
ctypedef struct Canon:
    const unsigned char* src
    Py_ssize_t size
    Py_ssize_t pos
    unsigned char* out
    Py_ssize_t len
    unsigned char* scratch  # ``size`` bytes, allocated on the first object that needs reordering
    Member* members  # a stack: each open object's members above its parent's
    Py_ssize_t n_members
    Py_ssize_t cap_members
    Py_ssize_t* order  # a permutation of one object's members and the merge sort's scratch
    Py_ssize_t cap_order
    const Span* ignore  # dropped from the top-level object only
    Py_ssize_t n_ignore
    bint escaped  # the last string written held an escape
    bint nomem  # the failure was an allocation, not the input


cdef Py_ssize_t canonicalise(Canon* c) noexcept nogil
