"""The plain modules the build compiles (src/fastgw/_compiled.py): the build in use, and the two equal."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastgw import _compiled

ROOT = Path(__file__).resolve().parents[1]
# The tests of exactly these modules, run again against the sources.
TWIN_TESTS = ("tests/requestlog/test_enrich.py", "tests/requestlog/test_usage.py", "tests/requestlog/test_prices.py",
              "tests/requestlog/test_record.py", "tests/analytics/test_metrics.py")


def _env(pure: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTGW_PURE"}
    if pure:
        env["FASTGW_PURE"] = "1"
    return env


def test_each_listed_module_runs_the_build_this_run_asked_for() -> None:
    # scripts/test builds first and runs without FASTGW_PURE: every module must be its compiled build.
    pure = _compiled.pure_requested()
    for name in _compiled.MODULES:
        module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        assert module.__file__ is not None and module.__file__.endswith(".py") == pure, (name, module.__file__)
    assert _compiled.FINDER.stale == []


def test_compiled_and_pure_agree_on_every_record() -> None:
    out = {}
    for pure in (False, True):
        proc = subprocess.run([sys.executable, "-m", "tests.compiled_twins"], cwd=ROOT, env=_env(pure),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[pure] = json.loads(proc.stdout)
    n = len(_compiled.MODULES)
    assert (out[False]["compiled"], out[True]["compiled"]) == (f"{n}/{n}", f"0/{n}")
    assert len(out[False]["rows"]) >= 20
    sources = {row["usage_source"] for row in out[False]["rows"]}
    assert sources == {"provider", "counted", "none"}  # the corpus reaches every path
    for key in ("records", "rows", "counted", "unpriced", "metrics"):
        assert out[False][key] == out[True][key], key


def test_the_sources_pass_the_same_tests() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *TWIN_TESTS],
                          cwd=ROOT, env=_env(True), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-500:]


# ----------------------------------------------------------------------- which file the finder picks


@pytest.fixture
def package(tmp_path: Path) -> tuple[Path, Path, Path]:
    pkg = tmp_path / "twinpkg"
    pkg.mkdir()
    source = pkg / "mod.py"
    source.write_text("WHERE = 'source'\n")
    compiled = pkg / ("mod" + _compiled.importlib.machinery.EXTENSION_SUFFIXES[0])
    compiled.write_bytes(b"")  # only its presence and time matter to the finder
    return pkg, source, compiled


def _age(path: Path, seconds: float) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def test_a_fresh_build_is_left_to_the_normal_import(package, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    pkg, source, compiled = package
    monkeypatch.delenv("FASTGW_PURE", raising=False)
    _age(source, 60)
    finder = _compiled.SourceFirst(["twinpkg.mod"])
    assert finder.find_spec("twinpkg.mod", [str(pkg)]) is None
    assert finder.find_spec("twinpkg.other", [str(pkg)]) is None  # not listed
    assert finder.stale == []


def test_a_source_edited_after_its_build_is_loaded_instead(package, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                            caplog: pytest.LogCaptureFixture) -> None:
    pkg, source, compiled = package
    monkeypatch.delenv("FASTGW_PURE", raising=False)
    _age(compiled, 60)
    finder = _compiled.SourceFirst(["twinpkg.mod"])
    with caplog.at_level(logging.WARNING, logger="fastgw.compiled"):
        spec = finder.find_spec("twinpkg.mod", [str(pkg)])
    assert spec is not None and spec.origin == str(source)
    assert finder.stale == ["twinpkg.mod"]
    assert "newer than its compiled build" in caplog.text and str(source) in caplog.text


def test_pure_asks_for_the_source_and_no_build_needs_no_finder(package, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    pkg, source, compiled = package
    finder = _compiled.SourceFirst(["twinpkg.mod"])
    monkeypatch.setenv("FASTGW_PURE", "1")
    spec = finder.find_spec("twinpkg.mod", [str(pkg)])
    assert spec is not None and spec.origin == str(source) and finder.stale == []
    compiled.unlink()
    assert finder.find_spec("twinpkg.mod", [str(pkg)]) is None  # the normal finder finds the .py


def test_bootstrap_rebuilds_when_a_source_lacks_a_build_or_is_newer(tmp_path: Path) -> None:
    suffix = _compiled.importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in _compiled.MODULES:
        source = Path(_compiled.source_path(name, str(tmp_path)))
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        _age(source, 120)
        built = source.with_name(source.stem + suffix)
        built.write_bytes(b"")
        _age(built, 60)
    assert _compiled.unbuilt(str(tmp_path)) == []
    first, second = (Path(_compiled.source_path(n, str(tmp_path))) for n in _compiled.MODULES[:2])
    first.with_name(first.stem + suffix).unlink()
    os.utime(second)  # edited now, built a minute ago
    assert _compiled.unbuilt(str(tmp_path)) == [str(first), str(second)]
