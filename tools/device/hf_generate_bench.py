#!/usr/bin/env python3
"""Baseline: Hugging Face transformers generate throughput on the same weights.

  python3 tools/device/hf_generate_bench.py MODEL_DIR --dtype float16 --batch 1 --prompt 128 --new 64
"""
import argparse
import time

import torch
import transformers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=64)
    args = parser.parse_args()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).cuda().eval()
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt), generator=torch.Generator().manual_seed(1)).cuda()
    kwargs = dict(do_sample=False, pad_token_id=0, min_new_tokens=args.new, max_new_tokens=args.new)
    with torch.no_grad():
        model.generate(ids, **{**kwargs, "min_new_tokens": 4, "max_new_tokens": 4})
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, **kwargs)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    print(f"hf transformers {args.dtype} batch {args.batch}: {args.batch * args.new / seconds:.1f} tokens/s "
          f"(prompt {args.prompt}, {args.new} new tokens, prefill included)")


if __name__ == "__main__":
    main()
