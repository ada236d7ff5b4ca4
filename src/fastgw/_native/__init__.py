"""The hot paths, compiled with Cython when built, else their pure-Python twins.

Use it as ``from fastgw._native import headers`` (or ``fastgw._native.headers`` as an attribute;
likewise ``ring``, ``cachekey``, ``nativeblock`` and ``recordwire``): that is the compiled module
when it is built and FASTGW_PURE is not "1", the twin in ``_pure`` otherwise. ``NATIVE`` says
which (``IMPLEMENTATION`` is "cython" or "pure").

A subtlety: the compiled module is itself *named* ``fastgw._native.headers``, so the package
attribute ``headers`` and the submodule of that name are two different things. The import system
binds the attribute to the submodule every time the submodule is imported, so this file binds it
last, to the chosen module. Never write ``import fastgw._native.headers`` (or ``.ring``,
``.cachekey``): in the pure case it would load the extension and rebind the attribute to it.
``load`` imports a given twin for the tests and puts the attribute back.
"""
import importlib
import os

from fastgw._native.errors import HeaderError

__all__ = ["HeaderError", "IMPLEMENTATION", "NATIVE", "cachekey", "headers", "load", "nativeblock", "recordwire", "ring"]

_MODULES = ("cachekey", "headers", "nativeblock", "recordwire", "ring")

if os.environ.get("FASTGW_PURE") == "1":
    from fastgw._native._pure import cachekey, headers, nativeblock, recordwire, ring
    NATIVE = False
else:
    try:
        from fastgw._native import cachekey, headers, nativeblock, recordwire, ring  # the compiled extensions
        NATIVE = True
    except ImportError:
        from fastgw._native._pure import cachekey, headers, nativeblock, recordwire, ring
        NATIVE = False

IMPLEMENTATION = "cython" if NATIVE else "pure"


def load(pure: bool, name: str = "headers"):
    """The module ``name`` of one twin, whichever is in use; ImportError when not built."""
    if name not in _MODULES:
        raise ValueError(f"no native module {name!r} (there are {', '.join(_MODULES)})")
    if pure:
        return importlib.import_module(f"fastgw._native._pure.{name}")
    chosen = globals()[name]
    try:
        return importlib.import_module(f"fastgw._native.{name}")
    finally:
        # Importing the submodule rebinds the package attribute to it; keep the chosen twin.
        globals()[name] = chosen
