"""The hot paths, compiled with Cython when built, else their pure-Python twins.

Use it as ``from fastgw._native import headers`` (or ``fastgw._native.headers`` as an attribute):
that is the compiled module when it is built and FASTGW_PURE is not "1", the twin in ``_pure``
otherwise. ``NATIVE`` says which (``IMPLEMENTATION`` is "cython" or "pure").

A subtlety: the compiled module is itself *named* ``fastgw._native.headers``, so the package
attribute ``headers`` and the submodule of that name are two different things. The import system
binds the attribute to the submodule every time the submodule is imported, so this file binds it
last, to the chosen module. Never write ``import fastgw._native.headers``: in the pure case it
would load the extension and rebind the attribute to it. ``load`` imports a given twin for the
tests and puts the attribute back.
"""
import importlib
import os

from fastgw._native.errors import HeaderError

__all__ = ["HeaderError", "IMPLEMENTATION", "NATIVE", "headers", "load"]

if os.environ.get("FASTGW_PURE") == "1":
    from fastgw._native._pure import headers
    NATIVE = False
else:
    try:
        from fastgw._native import headers  # the compiled extension
        NATIVE = True
    except ImportError:
        from fastgw._native._pure import headers
        NATIVE = False

IMPLEMENTATION = "cython" if NATIVE else "pure"


def load(pure: bool):
    """The ``headers`` module of one twin, whichever is in use; ImportError when not built."""
    if pure:
        return importlib.import_module("fastgw._native._pure.headers")
    chosen = globals()["headers"]
    try:
        return importlib.import_module("fastgw._native.headers")
    finally:
        # Importing the submodule rebinds the package attribute to it; keep the chosen twin.
        globals()["headers"] = chosen
