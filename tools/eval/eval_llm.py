#!/usr/bin/env python3
"""Evaluates a tern demo LLM directory with PyTorch + transformers (the reference numbers that
tern's CPU and CUDA backends are later compared with). Prints one table; writes JSON.

  python3 tools/eval/eval_llm.py --model models/tern-demo-llm --json eval.json

1. WikiText-2 test perplexity. The raw test split (tests/data/text/wikitext-2-test.txt) is
   tokenized whole (no BOS), cut into consecutive windows of --window - 1 tokens, each fed as
   [BOS] + window; every text token is scored once. Reported per token (token_ppl), per byte
   (bits_per_byte) and per WikiText word (word_ppl: total NLL over the count of whitespace words
   plus one <eos> per line, the convention of pytorch/examples word_language_model).
2. Line retrieval (LongEval "lines", as in the MoA paper) at --lengths tokens: records of
   adjective-noun keys with 5-digit values filling the context, one question at the end; the
   needle's position is uniform over the record. Teacher-forced greedy check: value_acc = the model's
   argmax reproduces every token of "<value>" after "... is <" (the token that closes it, '>' or
   '>.\n' depending on the split regex, included); answer_acc = it reproduces the whole answer
   sentence with its newline (what greedy decoding would print). A few greedy generations are
   printed too.
3. Greedy continuations of fixed prompts.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
import retrieval  # noqa: E402

PROMPTS = ["The history of", "In the beginning", "The city of", "Once upon a time", "The meaning of life is",
           "And the LORD said unto Moses,"]


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--wikitext", default=os.path.join(here, "../../tests/data/text/wikitext-2-test.txt"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--lengths", default="512,1024,2048")
    ap.add_argument("--retrieval-samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20241)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap.parse_args()


@torch.no_grad()
def perplexity(model, tok, text, window, bos, dev, batch):
    ids = tok.encode(text, add_special_tokens=False).ids
    step = window - 1
    chunks = [ids[i:i + step] for i in range(0, len(ids), step)]
    nll = 0.0
    for b in range(0, len(chunks), batch):
        group = chunks[b:b + batch]
        width = max(len(c) for c in group) + 1
        x = torch.full((len(group), width), bos, dtype=torch.long)
        y = torch.full((len(group), width), -100, dtype=torch.long)
        for i, c in enumerate(group):
            x[i, 1:len(c) + 1] = torch.tensor(c)
            y[i, 1:len(c) + 1] = torch.tensor(c)
        x, y = x.to(dev), y.to(dev)
        logits = model(input_ids=x).logits.float()
        nll += F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), y[:, 1:].reshape(-1),
                               ignore_index=-100, reduction="sum").double().item()
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    n_words = sum(len(line.split()) + 1 for line in lines)
    n_bytes = len(text.encode("utf-8"))
    return {"tokens": len(ids), "windows": len(chunks), "window": window, "nll_sum": nll,
            "token_ppl": math.exp(nll / len(ids)), "bits_per_byte": nll / math.log(2) / n_bytes,
            "word_ppl": math.exp(nll / n_words), "words": n_words, "bytes": n_bytes}


@torch.no_grad()
def retrieval_eval(model, tok, lengths, samples, seed, bos, pad, dev, batch):
    sample = retrieval.make_record(random.Random(0), 1000)
    lens = [len(e.ids) for e in tok.encode_batch([retrieval.line_text(k, v) for k, v in sample],
                                                  add_special_tokens=False)]
    line_tokens = sum(lens) / len(lens)
    k, v = sample[0]
    overhead = 1 + len(tok.encode(retrieval.PREAMBLE + retrieval.first_question(k) + retrieval.answer_text(k, v),
                                  add_special_tokens=False).ids)
    results, shows = {}, []
    for length in lengths:
        rng = random.Random(seed * 100003 + length)
        n_lines = int((length - overhead) / line_tokens) + 2
        encode = lambda t: tok.encode(t, add_special_tokens=False)  # noqa: E731
        cases = [retrieval.eval_case(rng, length, n_lines, encode) for _ in range(samples)]
        v_ok = a_ok = 0
        total_len = 0
        depth = []
        for b in range(0, len(cases), batch):
            group = cases[b:b + batch]
            width = max(len(c[5].ids) + 1 for c in group)
            x = torch.full((len(group), width), pad, dtype=torch.long)
            for i, c in enumerate(group):
                x[i, 0] = bos
                x[i, 1:len(c[5].ids) + 1] = torch.tensor(c[5].ids)
            pred = model(input_ids=x.to(dev)).logits.argmax(-1).cpu()
            for i, (rec, qi, text, ans, val, enc) in enumerate(group):
                total_len += len(enc.ids) + 1
                depth.append(qi / max(1, len(rec) - 1))
                a_pos = [j + 1 for j, (s, _) in enumerate(enc.offsets) if ans[0] <= s < ans[1]]
                v_pos = [j + 1 for j, (s, _) in enumerate(enc.offsets) if val[0] <= s < val[1]]
                ok = lambda ps: all(pred[i, p - 1].item() == x[i, p].item() for p in ps)
                v_ok += ok(v_pos)
                a_ok += ok(a_pos)
        results[str(length)] = {"samples": samples, "value_acc": v_ok / samples, "answer_acc": a_ok / samples,
                                "mean_tokens": total_len / samples,
                                "mean_lines": sum(len(c[0]) for c in cases) / samples}
        # Two real greedy generations per length, from the question on.
        for rec, qi, text, ans, val, enc in cases[:2]:
            prompt = text[:ans[0]]
            ids = [bos] + tok.encode(prompt, add_special_tokens=False).ids
            out = model.generate(torch.tensor([ids], device=dev), max_new_tokens=min(24, length - len(ids)), do_sample=False,
                                 eos_token_id=None, pad_token_id=pad)
            gen = tok.decode(out[0, len(ids):].tolist()).split("\n")[0]
            shows.append({"length": length, "prompt_tokens": len(ids), "key": rec[qi][0],
                          "expected": text[ans[0]:ans[1]].rstrip("\n"), "generated": gen})
    return results, shows


@torch.no_grad()
def continuations(model, tok, bos, eos, pad, dev, n):
    out = []
    for p in PROMPTS:
        ids = [bos] + tok.encode(p, add_special_tokens=False).ids
        g = model.generate(torch.tensor([ids], device=dev), max_new_tokens=n, do_sample=False,
                           eos_token_id=eos, pad_token_id=pad)
        out.append({"prompt": p, "continuation": tok.decode(g[0, len(ids):].tolist())})
    return out


def main():
    args = parse_args()
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    import transformers

    t0 = time.time()
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.backends.cuda.matmul.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(dev).eval()
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    bos, eos, pad = tok.token_to_id("<s>"), tok.token_to_id("</s>"), tok.token_to_id("<pad>")

    # The transformers tokenizer must agree with the tokenizers library (BOS included).
    hf_tok_check = None
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(args.model)
        probe = "The history of the Roman Empire , 1914 @-@ 1918 . line lovely-dog: REGISTER_CONTENT is <28840>"
        hf_tok_check = hf(probe)["input_ids"] == tok.encode(probe).ids
    except Exception as e:  # reported, not fatal
        hf_tok_check = f"{type(e).__name__}: {e}"

    text = open(args.wikitext, encoding="utf-8").read()
    ppl = perplexity(model, tok, text, args.window, bos, dev, args.batch)
    lengths = [int(x) for x in args.lengths.split(",")]
    ret, shows = retrieval_eval(model, tok, lengths, args.retrieval_samples, args.seed, bos, pad, dev, args.batch)
    conts = continuations(model, tok, bos, eos, pad, dev, args.new_tokens)

    n_params = sum(p.numel() for p in model.parameters())
    result = {
        "model": os.path.basename(os.path.normpath(args.model)), "parameters": n_params,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "dtype": args.dtype,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "wikitext2_test": ppl, "retrieval": ret, "retrieval_examples": shows, "continuations": conts,
        "hf_autotokenizer_agrees": hf_tok_check, "seconds": time.time() - t0,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)

    print(f"\n{result['model']}: {n_params / 1e6:.2f}M parameters, {args.dtype} on {result['device']}")
    print("| metric | value |\n| --- | --- |")
    print(f"| WikiText-2 test token perplexity ({ppl['tokens']} tokens, window {args.window}) | {ppl['token_ppl']:.2f} |")
    print(f"| WikiText-2 test bits per byte | {ppl['bits_per_byte']:.4f} |")
    print(f"| WikiText-2 test word-level perplexity ({ppl['words']} words) | {ppl['word_ppl']:.1f} |")
    for L in lengths:
        r = ret[str(L)]
        print(f"| retrieval @{L} ({r['samples']} cases, ~{r['mean_lines']:.0f} lines, {r['mean_tokens']:.0f} tokens): "
              f"value / whole answer | {100 * r['value_acc']:.1f}% / {100 * r['answer_acc']:.1f}% |")
    print(f"| transformers AutoTokenizer agrees with tokenizer.json | {hf_tok_check} |")
    print("\nretrieval generations:")
    for s in shows:
        print(f"  @{s['length']} expected {s['expected']!r}\n{'':9}got      {s['generated']!r}")
    print("\ngreedy continuations:")
    for c in conts:
        print(f"  {c['prompt']!r} -> {c['continuation']!r}")


if __name__ == "__main__":
    main()
