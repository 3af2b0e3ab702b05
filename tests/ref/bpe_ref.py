#!/usr/bin/python3
# tests/ref/bpe_ref.py: an independent GPT-2 BPE encoder (the algorithm of
# OpenAI's encoder.py, with Python's `re` standing in for the `regex`
# module: letters are [^\W\d_], numbers \d) that writes the expected ids of
# a set of texts for test_rt_tokenizer, which checks runtime/tokenizer.c
# against them. Usage: bpe_ref.py TOKENIZER_DIR OUT.txt
# OUT.txt: one line per text, "HEX_OF_UTF8_BYTES<TAB>id id id ...".
import json
import re
import sys

TEXTS = [
    "Hello world", "Hello, world!", " leading space", "trailing space ", "two  spaces", "tabs\tand\nnewlines\n\n",
    "It's they're we've I'm you'll he'd", "don't STOP", "numbers 12345 and 3.14159", "CamelCaseWord", "snake_case_name",
    "email@example.com", "https://example.org/path?q=1&x=2", "    indented code()", "a\n\n\nb", "   ",
    "The quick brown fox jumps over the lazy dog.", "café naïve résumé", "Ελληνικά κείμενο", "русский текст",
    "日本語のテキスト", "中文字符", "emoji 😀🚀 end", "mixed123abc456", "$$$ !!! ???", "line1\r\nline2",
    "'s 't 're 've 'm 'll 'd", "''quotes''", "--dash-- __under__", "Ünïcödé ÀÉÎÕÜ", "x" * 40,
    "A long sentence, with punctuation; and: more (parentheses) [brackets] {braces}.",
]

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))

def main():
    d, out = sys.argv[1], sys.argv[2]
    enc = json.load(open(d + "/encoder.json", encoding="utf-8"))
    merges = open(d + "/vocab.bpe", encoding="utf-8").read().split("\n")[1:-1]
    ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
    be = bytes_to_unicode()
    L, N, O = r"[^\W\d_]", r"\d", r"(?:[^\s\w]|_)"
    pat = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?%s+| ?%s+| ?%s+|\s+(?!\S)|\s+" % (L, N, O))

    def bpe(tok):
        word = list(tok)
        while len(word) > 1:
            pairs = [(ranks.get((word[i], word[i + 1]), 1 << 30), i) for i in range(len(word) - 1)]
            r, _ = min(pairs)
            if r == 1 << 30:
                break
            a, b = merges[r].split()
            new, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    new.append(a + b)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        return word

    with open(out, "w") as f:
        for t in TEXTS:
            ids = []
            for piece in pat.findall(t):
                ids += [enc[s] for s in bpe("".join(be[b] for b in piece.encode("utf-8")))]
            f.write("%s\t%s\n" % (t.encode("utf-8").hex(), " ".join(map(str, ids))))

main()
