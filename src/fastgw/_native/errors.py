"""Exceptions shared by the compiled and the pure-Python twins of ``fastgw._native``.

They live in a plain Python module so that both twins raise the very same class: an
``except HeaderError`` in the server catches it whichever twin is loaded.
"""


class HeaderError(ValueError):
    """A header name or value that HTTP forbids, or a malformed framing header. Maps to 400."""
