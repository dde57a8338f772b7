# Boundary index maps for the padding modes, shared by every kernel that pads natively.
#
#   mode  char  index i outside [0, n) maps to            e.g. n=4, i=-2 .. 5
#   ----  ----  ---------------------------------------   -------------------------
#   reflect   'r'  mirror without repeating the edge      2 1 | 0 1 2 3 | 2 1
#   replicate 'e'  nearest edge                           0 0 | 0 1 2 3 | 3 3
#   circular  'w'  wrap around                            2 3 | 0 1 2 3 | 0 1
#
# The front end guarantees reflect pads < n and circular pads <= n, so one fold suffices.

cdef inline Py_ssize_t coord_map(Py_ssize_t i, Py_ssize_t n, char mode) noexcept nogil:
    if i >= 0 and i < n:
        return i
    if mode == b'r':
        return -i if i < 0 else 2 * n - 2 - i
    if mode == b'e':
        return 0 if i < 0 else n - 1
    return i + n if i < 0 else i - n
