"""Loading one twin of a ``_native`` module by name, for tests that hold the two equal."""

from __future__ import annotations

import importlib.machinery
from types import ModuleType

import pytest

import fastgw._native

TWINS = ["cython", "pure"]


def load_twin(name: str, module: str) -> ModuleType:
    """``name`` is "cython" or "pure". A missing build fails the test: it is never quietly pure."""
    try:
        loaded = fastgw._native.load(pure=name == "pure", name=module)
    except ImportError as exc:
        pytest.fail(f"the compiled twin is not built ({exc}); run: python setup.py build_ext --inplace")
    if name == "cython":
        assert loaded.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), loaded.__file__
    else:
        assert loaded.__file__.endswith(".py"), loaded.__file__
    return loaded
