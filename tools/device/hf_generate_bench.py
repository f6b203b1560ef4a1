#!/usr/bin/env python3
"""Baseline: Hugging Face transformers generate throughput on the same weights.

  python3 tools/device/hf_generate_bench.py MODEL_DIR --dtype bfloat16 --batch 1 --prompt 128 --new 64 \
      [--cache static] [--compile] [--json out.json]

Times one greedy generate of --new tokens and one of a single token (the prefill), and reports both
the end-to-end rate (prefill included) and the decode-only rate: batch * (new - 1) / (t_new - t_1).
--cache static preallocates the KV cache (transformers' static cache); --compile wraps the forward in
torch.compile (mode reduce-overhead: CUDA graphs), which needs the static cache.
"""
import argparse
import json
import time

import torch
import transformers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--cache", default="dynamic", choices=["dynamic", "static"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).cuda().eval()
    if args.cache == "static":
        model.generation_config.cache_implementation = "static"
    if args.compile:
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt),
                        generator=torch.Generator().manual_seed(1)).cuda()

    def generate(new):
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0, min_new_tokens=new,
                       max_new_tokens=new)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    with torch.no_grad():
        for _ in range(2 if args.compile else 1):  # compilation and CUDA-graph capture happen here
            generate(args.new)
        t_new = generate(args.new)
        t_one = generate(1)
    end_to_end = args.batch * args.new / t_new
    decode = args.batch * (args.new - 1) / max(t_new - t_one, 1e-9)
    label = f"{args.dtype}, {args.cache} cache{', torch.compile' if args.compile else ''}"
    print(f"hf transformers ({label}) batch {args.batch}, prompt {args.prompt}, {args.new} new: "
          f"{end_to_end:.1f} tokens/s with prefill, {decode:.1f} tokens/s decode only")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dtype": args.dtype, "cache": args.cache, "compile": args.compile, "batch": args.batch,
                       "prompt": args.prompt, "new": args.new, "tokens_per_s_with_prefill": end_to_end,
                       "decode_tokens_per_s": decode}, f, indent=2)


if __name__ == "__main__":
    main()
