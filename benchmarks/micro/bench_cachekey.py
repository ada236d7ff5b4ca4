"""cache_key, compiled twin vs pure twin, on chat-completion bodies of about 1 KB and 100 KB.

    python benchmarks/micro/bench_cachekey.py [--repeat R] [--seconds S]

Prints the median time per call of each twin (over R runs), and as a reference what the obvious
alternative costs: ``xxh3_128(orjson.dumps(orjson.loads(body), option=OPT_SORT_KEYS))``, which
also sorts keys but re-formats numbers and knows no ignore keys or raw-bytes fallback.
"""
import argparse
import json
import random
import statistics
import sys
import timeit
from pathlib import Path

import orjson
import xxhash

try:
    import fastgw._native as native
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    import fastgw._native as native

SEED = b""
PROVIDER = b"openai"
TARGET = b"https://api.openai.com"
PATH = b"/v1/chat/completions"
CREDENTIAL = b"Bearer sk-proj-4fQx8mZ2bN7vK1pR9tY3wL6cH0dJ5sA8eG2uI7oP1qW4zX9nM3"
IGNORE = (b"user",)
WORDS = [
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by",
    "this", "are", "from", "or", "an", "which", "at", "not", "but", "cache", "request", "response",
    "token", "model", "stream", "latency", "gateway", "über", "café", "東京", "résumé", '"quoted"',
    "path/to/file", "line\nbreak", "tab\tseparated",
]


def chat_body(size, rnd):
    """About ``size`` bytes of chat-completion request, members in the SDK's order (not sorted),
    with json.dumps's default separators."""
    messages = [{"role": "system", "content": "You are a helpful assistant. Answer concisely and cite sources."}]
    body = {
        "messages": messages, "model": "gpt-4o-mini", "max_tokens": 512, "temperature": 0.2, "stream": True,
        "user": "user-1234",
    }
    total = len(json.dumps(body, ensure_ascii=False).encode())
    while total < size:
        content = " ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(8, 60)))
        messages.append({"role": rnd.choice(["user", "assistant"]), "content": content})
        total += len(json.dumps(messages[-1], ensure_ascii=False).encode()) + 2
    return json.dumps(body, ensure_ascii=False).encode()


def median_us(fn, body, repeat, seconds):
    number = max(1, int(seconds / max(timeit.timeit(lambda: fn(body), number=3) / 3, 1e-9)))
    runs = timeit.repeat(lambda: fn(body), number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement")
    parser.add_argument("--seconds", type=float, default=0.2, help="target length of one run")
    args = parser.parse_args()

    pure = native.load(pure=True, name="cachekey")
    try:
        compiled = native.load(pure=False, name="cachekey")
    except ImportError:
        sys.exit("the extension is not built: python setup.py build_ext --inplace")

    def twin(module):
        return lambda body: module.cache_key(SEED, PROVIDER, TARGET, PATH, body, IGNORE, CREDENTIAL)

    def reference(body):
        return xxhash.xxh3_128(orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)).digest()

    rnd = random.Random(0)
    bodies = {"~1 KB": chat_body(1_000, rnd), "~100 KB": chat_body(100_000, rnd)}
    contenders = {"cython": twin(compiled), "pure": twin(pure), "orjson+xxh3": reference}
    print(
        f"{'body':>8} {'bytes':>7} | {'cython':>10} {'pure':>10} {'orjson+xxh3':>12} |"
        f" {'pure/cython':>11} {'orjson/cython':>13}"
    )
    for label, body in bodies.items():
        assert twin(compiled)(body) == twin(pure)(body)
        t = {name: median_us(fn, body, args.repeat, args.seconds) for name, fn in contenders.items()}
        print(
            f"{label:>8} {len(body):>7} | {t['cython']:>8.2f}us {t['pure']:>8.2f}us {t['orjson+xxh3']:>10.2f}us |"
            f" {t['pure'] / t['cython']:>10.1f}x {t['orjson+xxh3'] / t['cython']:>12.1f}x"
            f"   (cython {len(body) / t['cython']:.0f} MB/s)"
        )
    print(f"median of {args.repeat} runs of ~{args.seconds}s each; ignore_keys={IGNORE}")


if __name__ == "__main__":
    main()
