#!/usr/bin/env python3
"""Scores a text file with PyTorch + transformers exactly as tools/eval/eval_llm.py scores
WikiText-2 (whole text tokenized without BOS, consecutive windows of --window - 1 tokens, each fed
as [BOS] + window, every text token scored once), at one or more window sizes. The reference that
`tern-perplexity` (tools/perplexity) is checked against.

  python3 tools/eval/score_text.py --model models/tern-demo-llm \
      --text tests/data/text/wikitext-2-test.txt --max-bytes 6000 --windows 256,2048 --json out.json

--max-bytes keeps the longest prefix of whole lines (ending at a newline) within that many bytes.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_llm import perplexity  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--max-bytes", type=int, default=0)
    ap.add_argument("--windows", default="2048")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    import transformers

    data = open(args.text, "rb").read()
    if args.max_bytes:
        data = data[:data.rfind(b"\n", 0, args.max_bytes) + 1]
    text = data.decode("utf-8")
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(args.device)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(dev).eval()
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    weights = open(os.path.join(args.model, "model.safetensors"), "rb").read()
    out = {"model": os.path.basename(os.path.normpath(args.model)),
           "weights_sha256": hashlib.sha256(weights).hexdigest(),
           "text": os.path.basename(args.text), "max_bytes": args.max_bytes, "bytes": len(data),
           "text_sha256": hashlib.sha256(data).hexdigest(), "device": str(dev), "dtype": "float32",
           "torch": torch.__version__, "transformers": transformers.__version__, "scores": []}
    for w in [int(v) for v in args.windows.split(",")]:
        t0 = time.time()
        r = perplexity(model, tok, text, w, tok.token_to_id("<s>"), dev, 8)
        r["seconds"] = time.time() - t0
        out["scores"].append(r)
        print(f"window {w}: {r['tokens']} tokens in {r['windows']} windows, nll_sum {r['nll_sum']:.6f}, "
              f"token ppl {r['token_ppl']:.6f}", flush=True)
    if args.json:
        json.dump(out, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
