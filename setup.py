"""Only the Cython extension list and its build switches live here; metadata is in pyproject.toml.

FASTGW_NO_EXT=1 skips the extensions (the package then runs on its pure-Python twins);
FASTGW_CYTHON_ANNOTATE=1 writes the annotated HTML next to each .pyx for profiling;
FASTGW_DEBUG=1 compiles the invariant checks in.
"""
import glob
import os
import runpy

from setuptools import Extension, setup

# Every .pyx under _native is an extension; each has a pure-Python twin in _native/_pure.
NATIVE_MODULES = sorted(os.path.basename(p)[:-4] for p in glob.glob("src/fastgw/_native/*.pyx"))
# Plain .py modules compiled as they are (Cython's pure-Python mode); see src/fastgw/_compiled.py.
COMPILED_PY = runpy.run_path("src/fastgw/_compiled.py")["MODULES"]


def extensions():
    if os.environ.get("FASTGW_NO_EXT") == "1":
        return []
    from Cython.Build import cythonize

    native = [
        Extension(f"fastgw._native.{name}", [f"src/fastgw/_native/{name}.pyx"], extra_compile_args=["-O2"])
        for name in NATIVE_MODULES
    ]
    # The .py modules keep Python's semantics whole: the .pyx switches below (no negative indexing,
    # C division) would change what their plain code means, so they are compiled with the defaults.
    plain = [
        Extension(name, [os.path.join("src", *name.split(".")) + ".py"], extra_compile_args=["-O2"])
        for name in COMPILED_PY
    ]
    annotate = os.environ.get("FASTGW_CYTHON_ANNOTATE") == "1"
    return cythonize(
        native,
        language_level=3,
        annotate=annotate,
        compile_time_env={"FASTGW_DEBUG": os.environ.get("FASTGW_DEBUG") == "1"},
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ) + cythonize(plain, language_level=3, annotate=annotate)


setup(ext_modules=extensions())
