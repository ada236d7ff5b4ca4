"""Plain-Python modules that the build also compiles with Cython, and the rule that picks one.

The exporter spends most of its CPU per record in ordinary Python: decoding the record, reading
usage out of the response, pricing it, folding it into the metrics. Rewriting that in ``.pyx``
would mean a second implementation of every provider's usage rules to keep equal to the first.
Instead ``setup.py`` compiles these ``.py`` files as they are (Cython's pure-Python mode), which
takes the interpreter's dispatch out of them; ``bench_exporter_stages.py`` measures what it saves.
The source stays the one implementation, and it is also the twin: ``FASTGW_PURE=1`` loads the
``.py`` files instead, and the tests compare the two on the same records.

A compiled module sits next to its source and the import system prefers it, so an edit to the
``.py`` would be ignored until the next build. ``install`` puts a finder first on ``sys.meta_path``
that loads the source instead when ``FASTGW_PURE=1`` or when the source is newer than the build,
and says so once in the log: a stale build costs speed, never correctness.

This file imports nothing from fastgw: ``setup.py`` and ``scripts/bootstrap`` read it directly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

MODULES: tuple[str, ...] = (
    "fastgw.analytics.metrics",
    "fastgw.requestlog.enrich",
    "fastgw.requestlog.prices",
    "fastgw.requestlog.record",
    "fastgw.requestlog.usage",
    # On the worker's path: every event of a stream whose usage the gateway asked for passes its
    # filter, 4.3 µs an event compiled against 5.6-5.8 as Python (benchmarks/micro/bench_sse_filter.py).
    "fastgw.stream.sse",
)

# A source modified this long after its build counts as edited. Installing a wheel writes both
# files within moments of each other, in either order; an edit after a build is seconds later.
STALE_AFTER_S = 2.0

log = logging.getLogger("fastgw.compiled")


def source_path(module: str, root: str = "src") -> str:
    return os.path.join(root, *module.split(".")) + ".py"


def pure_requested() -> bool:
    return os.environ.get("FASTGW_PURE") == "1"


def compiled_sibling(source: str) -> str | None:
    """The built extension next to ``source``, if there is one."""
    stem = source[: -len(".py")]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(stem + suffix):
            return stem + suffix
    return None


def is_stale(source: str, compiled: str) -> bool:
    return os.path.getmtime(source) > os.path.getmtime(compiled) + STALE_AFTER_S


class SourceFirst(importlib.abc.MetaPathFinder):
    """Loads the ``.py`` of a compiled module when asked to (FASTGW_PURE=1) or when its build is stale."""

    def __init__(self, modules: Sequence[str] = MODULES) -> None:
        self.modules = frozenset(modules)
        self.stale: list[str] = []  # modules loaded from source because their build was older

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None):  # type: ignore[no-untyped-def]
        if fullname not in self.modules or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if not os.path.exists(source):
                continue
            compiled = compiled_sibling(source)
            if compiled is None:
                return None  # not built: the normal finder loads the source anyway
            if pure_requested():
                return importlib.util.spec_from_file_location(fullname, source)
            if is_stale(source, compiled):
                self.stale.append(fullname)
                log.warning("%s is newer than its compiled build; running it uncompiled (slower) "
                            "until the next build (scripts/bootstrap)", source)
                return importlib.util.spec_from_file_location(fullname, source)
            return None
        return None


FINDER = SourceFirst()


def install() -> None:
    if FINDER not in sys.meta_path:
        sys.meta_path.insert(0, FINDER)


def report() -> tuple[int, int]:
    """(compiled modules in use, modules that could be): imports them all."""
    used = 0
    for name in MODULES:
        module = importlib.import_module(name)
        used += not (module.__file__ or "").endswith(".py")
    return used, len(MODULES)


def unbuilt(root: str = "src") -> list[str]:
    """Sources without a build, or newer than it: scripts/bootstrap rebuilds when there are any."""
    out = []
    for name in MODULES:
        source = source_path(name, root)
        compiled = compiled_sibling(source)
        if compiled is None or is_stale(source, compiled):
            out.append(source)
    return out


if __name__ == "__main__":  # for scripts/bootstrap: the sources the build reads, or (--unbuilt) those it must redo
    print("\n".join(unbuilt() if sys.argv[1:] == ["--unbuilt"] else [source_path(m) for m in MODULES]))
