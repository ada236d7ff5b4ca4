"""Token counting on a ~1 MB mixed corpus: fastgw (cython), fastgw (pure) and tiktoken, side by side.

    python benchmarks/micro/bench_tokenizer.py [--encoding o200k_base] [--repeat 5] [--size 1000000]

Prints the median over ``--repeat`` runs of each counter (MB/s of UTF-8 input, tokens/s), runs
interleaved and each on a fresh counter so no cache carries over. The first three rows are as
shipped (the compiled twin without a piece cache, the pure one with); the last two flip the
cache. Then where fastgw's time goes: the regex split (shared by both twins) and the BPE.
tiktoken has no count, so its number is ``len(encode_ordinary(text))``. It reads its vocabulary
offline from ../shared/tokenizers (TIKTOKEN_CACHE_DIR, as that folder's README says); fastgw
reads the copy it ships.

The corpus is generated from a fixed seed: English prose with contractions and numbers, Python /
JS / C code with indentation, chat-completion JSON, Chinese / Japanese / Korean, emoji with skin
tones and ZWJ sequences, long digit runs and whitespace runs. Words are drawn at random from
short lists, so rare words recur often (as identifiers and system prompts do): that favours a
piece cache, whose rows should be read with that in mind.
"""
import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    from fastgw.requestlog import tokenizer
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, str(ROOT / "src"))
    from fastgw.requestlog import tokenizer

SHARED = ROOT.parent / "shared" / "tokenizers"
# tiktoken checks the file against its published hash, so the package's own copy serves as well.
VOCABS = SHARED if SHARED.is_dir() else ROOT / "src" / "fastgw" / "data" / "tokenizers"
URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
CACHE = 4096  # the cache size the "cache" rows use

WORDS = (
    "the of and to in is that for it as with was on be by this are or from at which but not have an "
    "they you were their one all we can her has there been if more when will would who so no time "
    "gateway request response token stream latency provider model cache retry upstream header "
    "connection pool buffer exporter record usage billing customer invoice deployment region "
    "internationalization misconfiguration Kubernetes PostgreSQL ClickHouse OpenAI Anthropic"
).split()
CONTRACTIONS = ["it's", "don't", "we're", "they'LL", "I'd", "you've", "can't", "She's", "WE'RE"]
CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
    "知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最"
    "间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市"
    "眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计"
    "或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让"
    "认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办"
    "运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持"
    "取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞"
    "观争究包组造落视济喜离虽坏兴切"
)  # common Chinese characters
JA = "日本語のテキストです。今日は良い天気ですね。ありがとうございます、ゲートウェイ経由でリクエストを送信します。"
KO = "한국어 텍스트입니다. 오늘 날씨가 좋네요. 게이트웨이를 통해 요청을 보냅니다. 감사합니다!"
EMOJI = ["👋", "👋🏽", "👨‍👩‍👧‍👦", "🧑🏿‍💻", "🇯🇵", "❤️", "✅", "🚀", "😂", "🙏🏻", "🏳️‍🌈", "👩‍❤️‍💋‍👨"]
CODE = [
    "def {f}(items: list[int]) -> int:\n    total = 0\n    for item in items:\n        if item % {n} == 0:\n"
    "            total += item\n    return total\n\n",
    "function {f}(a, b) {{\n  const x = a * {n};\n  return x + b; // TODO: {w}\n}}\n\n",
    "static int {f}(const char *s, size_t n) {{\n\tfor (size_t i = 0; i < n; i++) {{\n"
    "\t\tif (s[i] == '\\n') return {n};\n\t}}\n\treturn -1;\n}}\n\n",
]
JSON = '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "{w} {w2} {n}"}}], "temperature": 0.{n}}}\n'


def corpus(size: int, seed: int = 20240513) -> str:
    """About ``size`` bytes of UTF-8 text, the same for a given seed."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0

    def sentence() -> str:
        words = [rng.choice(WORDS + CONTRACTIONS) for _ in range(rng.randint(6, 18))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 10**rng.randint(1, 12))))
        return " ".join(words).capitalize() + rng.choice([". ", "! ", "? ", "... ", ";\n", ".\n\n"])

    kinds = [
        (45, lambda: sentence()),
        (22, lambda: rng.choice(CODE).format(f=rng.choice(WORDS) + "_" + rng.choice(WORDS), n=rng.randint(2, 999),
                                             w=rng.choice(WORDS))),
        (8, lambda: JSON.format(w=rng.choice(WORDS), w2=rng.choice(CONTRACTIONS), n=rng.randint(0, 99))),
        (10, lambda: "".join(rng.choice(CJK) for _ in range(rng.randint(10, 40))) + "。\n"),
        (4, lambda: JA if rng.random() < 0.5 else KO),
        (4, lambda: " ".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 6))) + " " + sentence()),
        (4, lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(8, 60))) + rng.choice(" \n,")),
        (3, lambda: rng.choice([" " * rng.randint(2, 40), "\t" * rng.randint(1, 8), "\n" * rng.randint(2, 6)])),
    ]
    weights = [w for w, _ in kinds]
    makers = [m for _, m in kinds]
    while length < size:
        piece = rng.choices(makers, weights)[0]()
        parts.append(piece)
        length += len(piece.encode())
    return "".join(parts)


def offline_tiktoken():
    """tiktoken, its downloads replaced by a cache holding ../shared/tokenizers (see its README)."""
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    for name in tokenizer.ENCODINGS:
        key = hashlib.sha1(URL.format(name).encode()).hexdigest()
        shutil.copy(VOCABS / f"{name}.tiktoken", Path(cache) / key)
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    import tiktoken

    return tiktoken


def median_seconds(makers: dict, text, repeat: int) -> dict:
    """The median time of ``make()(text)`` for each maker, each run on a fresh counter.

    The runs are interleaved (one of each maker per round), so a burst of load from something
    else on the machine slows every counter alike instead of one of them.
    """
    runs: dict = {label: [] for label in makers}
    for make in makers.values():
        make()(text)  # warm up: imports, the regex module's compiled pattern, CPU caches
    for _ in range(repeat):
        for label, make in makers.items():
            count = make()
            start = time.perf_counter()
            count(text)
            runs[label].append(time.perf_counter() - start)
    return {label: statistics.median(times) for label, times in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoding", default="o200k_base", choices=tokenizer.ENCODINGS)
    parser.add_argument("--repeat", type=int, default=5, help="runs per counter (the median is shown)")
    parser.add_argument("--size", type=int, default=1_000_000, help="corpus size in UTF-8 bytes")
    args = parser.parse_args()

    text = corpus(args.size)
    megabytes = len(text.encode()) / 1e6
    ranks = tokenizer.load_ranks(args.encoding)
    try:
        compiled = tokenizer.bpe_twin(pure=False)
    except ImportError:
        sys.exit("the extension is not built: python setup.py build_ext --inplace")
    pure = tokenizer.bpe_twin(pure=True)
    reference = offline_tiktoken().get_encoding(args.encoding)

    def fastgw(twin, **options):
        return lambda: tokenizer.Encoding(args.encoding, ranks, twin, **options).count

    expected = len(reference.encode_ordinary(text))
    counters = {  # the first three as shipped (the compiled twin without a cache, the pure with)
        "fastgw (cython)": fastgw(compiled),
        "fastgw (pure)": fastgw(pure),
        "tiktoken": lambda: lambda t: len(reference.encode_ordinary(t)),
        f"cython, cache {CACHE}": fastgw(compiled, cache_size=CACHE),
        "pure, no cache": fastgw(pure, cache_size=0),
    }
    print(f"{args.encoding}, {megabytes:.2f} MB corpus, {expected} tokens, median of {args.repeat} runs")
    print(f"{'counter':<19} {'seconds':>8} {'MB/s':>7} {'Mtokens/s':>10}  tokens")
    medians = median_seconds(counters, text, args.repeat)
    for label, make in counters.items():
        tokens, seconds = make()(text), medians[label]
        flag = "" if tokens == expected else "  MISMATCH"
        print(f"{label:<19} {seconds:8.3f} {megabytes / seconds:7.2f} {tokens / seconds / 1e6:10.2f}  {tokens}{flag}")

    split = tokenizer.Encoding(args.encoding, ranks, compiled)._split
    pieces = split(text)
    print(f"\nwhere fastgw's time goes ({len(pieces)} pieces):")
    print(f"  {'regex split (both twins)':<26} {median_seconds({0: lambda: split}, text, args.repeat)[0]:.3f} s")
    bpe = {
        f"BPE, {label}, " + (f"cache {size}" if size else "no cache"):
            (lambda twin=twin, size=size: twin.BytePairEncoder(ranks, cache_size=size).count_pieces)
        for label, twin in (("cython", compiled), ("pure", pure))
        for size in (0, CACHE)
    }
    for what, seconds in median_seconds(bpe, pieces, args.repeat).items():
        print(f"  {what:<26} {seconds:.3f} s")


if __name__ == "__main__":
    main()
