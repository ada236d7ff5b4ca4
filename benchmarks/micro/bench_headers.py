"""parse_headers, compiled twin vs pure twin, on the headers of a typical OpenAI SDK request.

    python benchmarks/micro/bench_headers.py [--number N] [--repeat R]

Prints the median time per call of each twin (over R runs of N calls) and the speed-up.
"""
import argparse
import statistics
import sys
import timeit
from pathlib import Path

try:
    import fastgw._native as native
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    import fastgw._native as native

RAW = [
    (b"Host", b"api.openai.com"),
    (b"Authorization", b"Bearer sk-proj-4fQx8mZ2bN7vK1pR9tY3wL6cH0dJ5sA8eG2uI7oP1qW4zX9nM3"),
    (b"Content-Type", b"application/json"),
    (b"Content-Length", b"1432"),
    (b"User-Agent", b"OpenAI/Python 1.40.0"),
    (b"X-Stainless-Lang", b"python"),
    (b"X-Stainless-Package-Version", b"1.40.0"),
    (b"X-Stainless-OS", b"Linux"),
    (b"X-Stainless-Arch", b"x64"),
    (b"X-Stainless-Runtime", b"CPython"),
    (b"X-Stainless-Runtime-Version", b"3.11.7"),
    (b"Accept", b"application/json"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"Connection", b"keep-alive"),
    (b"Helicone-Auth", b"Bearer sk-helicone-7x2m4k-qwerty12-asdfgh34-zxcv"),
    (b"Helicone-User-Id", b"user-1234"),
    (b"Helicone-Cache-Enabled", b"true"),
    (b"Helicone-Property-Environment", b"production"),
    (b"Helicone-Property-Team", b"search-ranking"),
]


def median_ns(parse, number, repeat):
    runs = timeit.repeat(lambda: parse(RAW), number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs")
    args = parser.parse_args()

    pure = native.load(pure=True)
    try:
        compiled = native.load(pure=False)
    except ImportError:
        sys.exit("the extension is not built: python setup.py build_ext --inplace")
    results = {}
    for name, module in (("cython", compiled), ("pure", pure)):
        module.parse_headers(RAW)  # warm up
        results[name] = median_ns(module.parse_headers, args.number, args.repeat)
        print(f"{name:>6}: {results[name]:8.0f} ns/call  (median of {args.repeat} x {args.number})")
    print(f"speed-up: {results['pure'] / results['cython']:.1f}x  ({len(RAW)} headers)")


if __name__ == "__main__":
    main()
