#!/usr/bin/env python3
"""Builds the raw training corpus of tern-demo-llm (standard library only; runs on the CPU machine).

Sources (all read from this machine, never from a hub):
  * WikiText-2 raw validation split  ../shared/data/text/wikitext-2/valid.txt   (CC BY-SA 3.0)
  * King James Bible, Debian package bible-kjv-text, dumped with `bible` (bible-kjv) (public domain)
  * fortune cookies, Debian package fortunes, /usr/share/games/fortunes/*     (BSD package; quotes of
    various authorship, as distributed by Debian)

Writes <out>/corpus.jsonl: one JSON object per document {"src": ..., "text": ...}. The last
--dev-articles WikiText articles go to <out>/dev.jsonl (held out; training-time monitoring only).
Also writes <out>/SOURCES.txt with sizes and sha256 of every input.

  apt-get install -y bible-kjv bible-kjv-text fortunes
  python3 tools/train/prepare_data.py --out .demo-data
"""
import argparse
import hashlib
import json
import os
import re
import subprocess

FORTUNE_DIR = "/usr/share/games/fortunes"
# ascii-art is drawings, not prose.
FORTUNE_SKIP = {"ascii-art"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wiki_articles(path):
    text = open(path, encoding="utf-8").read()
    # Top-level headings look like " = Title = " (one '=' each side).
    lines = text.split("\n")
    articles, cur = [], []
    for line in lines:
        if re.fullmatch(r" = [^=].*[^=] = ", line) and any(l.strip() for l in cur):
            articles.append(cur)
            cur = []
        cur.append(line)
    if cur:
        articles.append(cur)
    # Kept byte-for-byte as in the raw file (leading spaces, " @-@ ", <unk>), so that training text
    # looks like the raw test split that perplexity is measured on.
    out = ["\n".join(a) + "\n" for a in articles if "".join(a).strip()]
    return out, text.encode("utf-8")


def kjv_books():
    raw = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], check=True, capture_output=True).stdout
    books, cur_book, cur = [], None, []
    for line in raw.decode("utf-8").split("\n"):
        m = re.fullmatch(r"(.+?) (\d+)", line.strip())
        if m and not line.startswith(" "):
            book = m.group(1)
            if book != cur_book and cur:
                books.append("\n".join(cur).strip())
                cur = []
            cur_book = book
            cur.append(("\n" if cur else "") + f"{book} {m.group(2)}\n")
            continue
        v = re.fullmatch(r"\s*\d+ (.*)", line)
        if v:
            cur.append(v.group(1).strip())
    if cur:
        books.append("\n".join(cur).strip())
    return books, raw


def fortunes():
    docs, digest = [], hashlib.sha256()
    for name in sorted(os.listdir(FORTUNE_DIR)):
        path = os.path.join(FORTUNE_DIR, name)
        if name.endswith((".dat", ".u8")) or os.path.islink(path) or name in FORTUNE_SKIP:
            continue
        data = open(path, "rb").read()
        digest.update(name.encode() + b"\0" + data)
        for f in data.decode("utf-8", errors="replace").split("\n%\n"):
            f = f.strip("%\n").rstrip()
            if f.strip():
                docs.append(f.expandtabs(8))
    return docs, digest.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".demo-data")
    ap.add_argument("--wiki-valid", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/text/wikitext-2/valid.txt"))
    ap.add_argument("--dev-articles", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    wiki, wiki_raw = wiki_articles(args.wiki_valid)
    train_wiki, dev_wiki = wiki[: -args.dev_articles], wiki[-args.dev_articles :]
    kjv, kjv_raw = kjv_books()
    fort, fort_sha = fortunes()

    stats = {}
    with open(os.path.join(args.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for src, docs in (("wikitext2-valid", train_wiki), ("kjv", kjv), ("fortunes", fort)):
            for d in docs:
                f.write(json.dumps({"src": src, "text": d}, ensure_ascii=False) + "\n")
            stats[src] = (len(docs), sum(len(d.encode("utf-8")) for d in docs))
    with open(os.path.join(args.out, "dev.jsonl"), "w", encoding="utf-8") as f:
        for d in dev_wiki:
            f.write(json.dumps({"src": "wikitext2-valid-dev", "text": d}, ensure_ascii=False) + "\n")
    stats["wikitext2-valid-dev"] = (len(dev_wiki), sum(len(d.encode("utf-8")) for d in dev_wiki))

    with open(os.path.join(args.out, "SOURCES.txt"), "w") as f:
        f.write(f"wikitext-2 valid.txt sha256 {sha256(wiki_raw)}\n")
        f.write(f"bible -l100000 Gen1:1-Rev22:21 output sha256 {sha256(kjv_raw)}\n")
        f.write(f"fortunes files (name NUL data, sorted) sha256 {fort_sha}\n")
        for k, (n, b) in stats.items():
            f.write(f"{k}: {n} documents, {b} bytes\n")
    print(open(os.path.join(args.out, "SOURCES.txt")).read(), end="")


if __name__ == "__main__":
    main()
