"""The tokenizer against Hugging Face `tokenizers` on generated text.

The joyai-llm (DeepSeek-V3) split that DS4 uses has no llama.cpp oracle file, so this
test builds the reference in place: a `tokenizers` byte-level BPE from the vocabulary,
merges and token types of tests/data/tokenizer/ggml-vocab-deepseek-llm.gguf, with the
pre-tokenizer each name stands for written as Hugging Face writes it in tokenizer.json
(a Sequence of Split(behavior="isolated") regexes, then ByteLevel(use_regex=False); for
gpt-2 the ByteLevel regex itself). The same vocabulary is re-labelled with each
tokenizer.ggml.pre and written to a temporary GGUF for `flashplan tokenize --file`.
Both must give the same ids for a few thousand generated strings: mixed scripts,
digit runs, CJK, kana, hangul, combining marks, punctuation, whitespace runs of every
White_Space kind, newlines, emoji sequences, contractions and special-token text.

Exit 77 ("not run") when FLASHPLAN_BIN is not set or `tokenizers`/`gguf` are missing.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

try:
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
except ImportError as e:  # pinned in tests/requirements.txt; absent means not set up
    print(f"not run: {e}")
    sys.exit(77)

BIN = os.environ.get("FLASHPLAN_BIN")
DATA = os.environ.get("FLASHPLAN_TEST_DATA", "tests/data")
if not BIN:
    print("not run: FLASHPLAN_BIN is not set")
    sys.exit(77)

# ---- The pre-tokenizers, as tokenizer.json spells them -------------------------


def char_class(ranges):
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


DEEPSEEK_LLM_LETTERS = char_class([
    (0x41, 0x5A), (0x61, 0x7A), (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF),
    (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x377), (0x37B, 0x37D), (0x37F, 0x37F),
    (0x386, 0x386), (0x388, 0x38A), (0x38C, 0x38C), (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481),
    (0x48A, 0x52F), (0x531, 0x556), (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD),
    (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A),
    (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57),
    (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4),
    (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3),
    (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102),
    (0x2107, 0x2107), (0x210A, 0x2113), (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124),
    (0x2126, 0x2126), (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139),
    (0x213C, 0x213F), (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C7B),
    (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B),
    (0xA722, 0xA76F), (0xA771, 0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06),
    (0xFB13, 0xFB17), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3),
    (0x104D8, 0x104FB), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943),
])
CJK_HANGUL = char_class([(0x4E00, 0x9FA5), (0x0800, 0x4E00), (0xAC00, 0xD7FF)])

SPLITS = {
    "joyai-llm": [
        r"\p{N}{1,3}",
        "[" + char_class([(0x4E00, 0x9FA5), (0x3040, 0x309F), (0x30A0, 0x30FF)]) + "]+",
        r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    ],
    "deepseek-llm": [
        r"[\r\n]",
        r"\s?[" + DEEPSEEK_LLM_LETTERS + "]+",
        r"\s?[!-/:-~" + char_class([(0xFF01, 0xFF0F), (0xFF1A, 0xFF5E), (0x2018, 0x201F), (0x3000, 0x3002)]) + "]+",
        r"\s+$",
        "[" + CJK_HANGUL + "]+",
        r"\p{N}+",
    ],
    "deepseek-coder": [
        r"[\r\n]",
        r"\s?\p{L}+",
        r"\s?\p{P}+",
        "[" + CJK_HANGUL + "]+",
        r"\p{N}",
    ],
    "gpt-2": None,  # ByteLevel's own regex
}
SPLITS["deepseek-v3"] = SPLITS["joyai-llm"]


def field_strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def field_ints(reader, key):
    f = reader.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def field_int(reader, key):
    return int(reader.fields[key].parts[-1][0])


def build_hf(tokens, merges, types, pre):
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    assert len(vocab) == len(tokens), "duplicate token texts: the id maps would differ"
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges]))
    if SPLITS[pre] is None:
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in SPLITS[pre]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    # CONTROL tokens are HF special added tokens, USER_DEFINED plain added tokens.
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                           for i, ty in enumerate(types) if ty == 3])
    tk.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                   for i, ty in enumerate(types) if ty == 4])
    return tk


def write_gguf(path, tokens, merges, types, pre, bos, eos):
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- Generated text -------------------------------------------------------------

WORDS = ["Hello", "world", "the", "DeepSeek", "flash", "tokenizer", "naïve", "Äpfel", "über", "café",
         "I'm", "we'll", "they're", "you'VE", "it's", "'S", "don't", "x", "y2k", "camelCase", "snake_case",
         "Привет", "мир", "Ελληνικά", "שלום", "مرحبا", "नमस्ते", "สวัสดี", "ქართული", "Հայերեն", "ǅemal",
         "Ωmega", "Kelvin", "ﬁne", "ＡＢＣ", "ａｂｃ", "e\u0301", "a\u0308\u0323"]
CJK = ["你好", "世界", "中文分词", "龥", "漢字", "ひらがな", "カタカナ", "ー", "日本語です", "한국어", "안녕하세요",
       "ㄱㄴ", "〇", "々", "㐀"]
DIGITS = ["0", "7", "42", "123", "2024", "31415926", "1,000", "3.14", "٣٤٥", "१२३", "Ⅻ", "½", "²"]
PUNCT = [".", ",", "!", "?", "...", "!!!", "-", "--", "—", "'", '"', "(", ")", "[", "]", "{", "}", "<", ">",
         "/", "\\", "@", "#", "$", "%", "^", "&", "*", "_", "=", "+", "~", "`", "|", ";", ":",
         "“", "”", "‘", "’", "«", "»", "、", "。", "，", "！", "？", "：", "（", "）", "€", "£", "∑", "©",
         "±", "→", "♥", "™", "§", "¿", "¡", "#include", "std::vector<int>", "->", "=>", "!=", "::"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\t\t", "\u00a0", "\u3000",
          "\u2028", "\u2029", "\u0085", "\u000b", "\u000c", "\u180e", "\u2003", "\u200b", "\u202f", " \t \n"]
EMOJI = ["😀", "🚀", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "🇺🇸", "✅", "🦙", "🦙🦙", "\U0001F3FB"]


def generate(rng, specials):
    pools = [(WORDS, 6), (CJK, 3), (DIGITS, 3), (PUNCT, 4), (SPACES, 5), (EMOJI, 2)]
    weights = [w for _, w in pools]
    out = []
    for _ in range(rng.randint(1, 24)):
        pool = rng.choices([p for p, _ in pools], weights)[0]
        out.append(rng.choice(pool))
        if rng.random() < 0.35:
            out.append(" ")
    if specials and rng.random() < 0.05:
        out.insert(rng.randrange(len(out) + 1), rng.choice(specials))
    if rng.random() < 0.05:  # random code points (valid scalars, planes 0-1)
        out.append("".join(chr(c) for c in (rng.randrange(0x20, 0x1FFFF) for _ in range(rng.randint(1, 8)))
                           if not 0xD800 <= c <= 0xDFFF))
    return "".join(out)


def main():
    src = os.path.join(DATA, "tokenizer", "ggml-vocab-deepseek-llm.gguf")
    r = gguf.GGUFReader(src)
    tokens = field_strings(r, "tokenizer.ggml.tokens")
    merges = field_strings(r, "tokenizer.ggml.merges")
    types = field_ints(r, "tokenizer.ggml.token_type")
    bos, eos = field_int(r, "tokenizer.ggml.bos_token_id"), field_int(r, "tokenizer.ggml.eos_token_id")
    specials = [tokens[i] for i, ty in enumerate(types) if ty == 3]

    rng = random.Random(20260522)
    texts = [generate(rng, specials) for _ in range(3000)]
    texts += ["", " ", "\n", "a" * 500, " " * 300 + "x", "1" * 100, "你" * 200, "\n" * 50 + " ", "😀" * 30]

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "texts.jsonl")
        with open(inp, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps(t) + "\n")
        for pre in ["joyai-llm", "deepseek-v3", "deepseek-llm", "deepseek-coder", "gpt-2"]:
            path = os.path.join(tmp, f"vocab-{pre}.gguf")
            write_gguf(path, tokens, merges, types, pre, bos, eos)
            res = subprocess.run([BIN, "tokenize", path, "--file", inp], capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{pre}: flashplan tokenize failed ({res.returncode}): {res.stderr.strip()}")
                failures += 1
                continue
            ours = [[int(x) for x in line.split()] for line in res.stdout.split("\n")[:-1]]
            if len(ours) != len(texts):
                print(f"{pre}: {len(ours)} output lines for {len(texts)} inputs")
                failures += 1
                continue
            hf = build_hf(tokens, merges, types, pre)
            bad = 0
            for t, mine in zip(texts, ours):
                ref = hf.encode(t, add_special_tokens=False).ids
                if mine != ref:
                    bad += 1
                    if bad <= 5:
                        print(f"{pre}: mismatch for {t!r}\n  flashplan: {mine}\n  hf:        {ref}")
            print(f"{pre}: {len(texts) - bad}/{len(texts)} strings identical")
            failures += bad
    if failures:
        print(f"FAILED: {failures} mismatches")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
