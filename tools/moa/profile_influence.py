#!/usr/bin/env python3
"""Profiles the attention influence of every query head of a Hugging Face Llama model (the demo
LLM or any Llama directory) on calibration sequences, MoA's gradient-based way, for search.py.

    python3 tools/moa/profile_influence.py --model models/tern-demo-llm --lengths 512 1024 2048 \
        --sequences 32 --out /tmp/moa-profile

Calibration, never the evaluation sets: long-dependency line-retrieval records
(tools/train/retrieval.py) drawn with their own seed (--seed; tools/eval/retrieval_cases.py and
tools/eval/eval_llm.py use others), and optionally windows of --text files. The supervision is
the model's own output (MoA's "model alignment"): after each record's questions, and after each text
window, the dense model continues greedily, and the loss is the cross entropy of those generated
tokens only, teacher-forced over the whole sequence.

Influence: with A the softmax of a query row and G = dLoss/dA, dropping key j from the row and
renormalising the rest changes the loss to first order by

    dL_ij = A_ij / (1 - A_ij) * (sum_k A_ik G_ik - G_ij)

(the other weights grow by the factor 1 / (1 - A_ij)); a row with one key (A_ij = 1) keeps it. The
profile is |dL| summed over the calibration sequences and over 64x64 (--block) tiles of query and
key positions: influence_L<length>.{json,f32} per length (tools/moa/influence_file.py).

Runs on one GPU with PyTorch and transformers (eager attention through a registered attention
function, so it needs transformers >= 4.48). Memory: the attention weights of every layer are kept
for the backward pass, so Llama-3-8B profiles up to about 4k tokens on an 80 GB card.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import influence_file  # noqa: E402
import retrieval  # noqa: E402


class Recorder:
    """Accumulates the block-summed |dL| of each layer while backward runs."""

    def __init__(self, num_layers, num_heads, length, block, device):
        self.block = block
        self.nb = length // block
        self.sums = torch.zeros(num_layers, num_heads, self.nb, self.nb, dtype=torch.float64, device=device)
        self.active = False

    def hook(self, layer, weights):
        def on_grad(grad):
            if not self.active:
                return grad
            a = weights[0].float()  # [heads, q, k]
            g = grad[0].float()
            length = self.nb * self.block
            for h in range(a.shape[0]):  # one head at a time bounds the transient memory
                ah, gh = a[h, :length, :length], g[h, :length, :length]
                s = (ah * gh).sum(-1, keepdim=True)
                effect = ah / (1.0 - ah).clamp_min(1e-6) * (s - gh)
                effect[0] = ah[0] * gh[0]  # the first row has one key
                effect = effect.abs().reshape(self.nb, self.block, self.nb, self.block).sum(dim=(1, 3))
                self.sums[layer, h] += effect.double()
            return grad

        return on_grad


RECORDER = None


def profile_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager causal attention whose weights report their gradient to RECORDER."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = 1.0 / math.sqrt(query.shape[-1])
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    q_len, k_len = query.shape[2], key.shape[2]
    # Causal, with the queries the last q_len positions (decode steps of generate too).
    causal = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).triu(k_len - q_len + 1)
    scores = scores.masked_fill(causal, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    if weights.requires_grad and RECORDER is not None:
        weights.register_hook(RECORDER.hook(module.layer_idx, weights.detach()))
    out = torch.matmul(weights, value)
    return out.transpose(1, 2).contiguous(), None


def load_model(path, dtype, device):
    from transformers import AutoModelForCausalLM
    try:
        from transformers import AttentionInterface
        AttentionInterface.register("tern_moa_profile", profile_attention)
        impl = "tern_moa_profile"
        try:  # transformers with per-implementation masks: ours builds its own causal mask, any format does
            from transformers import AttentionMaskInterface
            from transformers.masking_utils import sdpa_mask
            AttentionMaskInterface.register("tern_moa_profile", sdpa_mask)
        except ImportError:
            pass
    except ImportError:  # older transformers: replace the eager function instead
        from transformers.models.llama import modeling_llama
        modeling_llama.eager_attention_forward = profile_attention
        impl = "eager"
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=impl)
    except TypeError:  # transformers before `dtype`
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, attn_implementation=impl)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_tokenizer(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def greedy(model, tok, ids, max_new, stop_at_newline=False):
    """The model's own greedy continuation of ids (a list), at most max_new tokens; with
    stop_at_newline, up to the token that completes its first line."""
    out = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=max_new, do_sample=False,
                         pad_token_id=0, eos_token_id=None)
    new = out[0, len(ids):].tolist()
    if stop_at_newline:
        for i in range(len(new)):
            if "\n" in tok.decode(new[:i + 1]):
                return new[:i + 1]
    return new


def retrieval_sequence(model, tok, rng, length, bos):
    """A record, then questions answered by the model itself until the sequence reaches length.
    Returns (ids, mask) with mask 1 on the model's answers."""
    record = retrieval.make_record(rng, max(4, length // 9))
    while True:
        ids = [bos] + tok.encode(retrieval.PREAMBLE + "".join(retrieval.line_text(k, v) for k, v in record),
                                 add_special_tokens=False)
        if len(ids) <= length * 3 // 4 or len(record) <= 4:
            break
        record = record[: len(record) * 9 // 10]
    mask = [0] * len(ids)
    first = True
    while True:
        key, _ = record[rng.randrange(len(record))]
        q = tok.encode((retrieval.first_question(key) if first else retrieval.next_question(key)),
                       add_special_tokens=False)
        if len(ids) + len(q) + 24 > length:
            break
        first = False
        ids += q
        mask += [0] * len(q)
        answer = greedy(model, tok, ids, 24, stop_at_newline=True)
        ids += answer
        mask += [1] * len(answer)
    return ids, mask


def text_sequence(model, tok, text_ids, rng, length, bos):
    """A window of a text and the model's own greedy continuation of a quarter of the length."""
    new = length // 4
    start = rng.randrange(max(1, len(text_ids) - length))
    ids = [bos] + text_ids[start:start + length - new - 1]
    answer = greedy(model, tok, ids, new)
    return ids + answer, [0] * len(ids) + [1] * len(answer)


def main():
    global RECORDER
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="Hugging Face Llama directory")
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--sequences", type=int, default=32, help="calibration sequences per length")
    ap.add_argument("--text", nargs="*", default=[], help="text files for half of the sequences (optional)")
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--seed", type=int, default=20260607)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if any(n % args.block for n in args.lengths):
        raise SystemExit("--lengths must be multiples of --block")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    model = load_model(args.model, getattr(torch, args.dtype), device)
    tok = load_tokenizer(args.model)
    cfg = model.config
    bos = tok.bos_token_id if tok.bos_token_id is not None else cfg.bos_token_id
    text_ids = []
    for path in args.text:
        with open(path, encoding="utf-8") as f:
            text_ids += tok.encode(f.read(), add_special_tokens=False)
    os.makedirs(args.out, exist_ok=True)
    embed = model.get_input_embeddings()
    for length in args.lengths:
        if length > cfg.max_position_embeddings:
            raise SystemExit(f"length {length} is beyond the model's context {cfg.max_position_embeddings}")
        rng = random.Random(args.seed * 7919 + length)
        RECORDER = Recorder(cfg.num_hidden_layers, cfg.num_attention_heads, length, args.block, device)
        start, supervised = time.time(), 0
        for i in range(args.sequences):
            if text_ids and i % 2 == 1:
                ids, mask = text_sequence(model, tok, text_ids, rng, length, bos)
            else:
                ids, mask = retrieval_sequence(model, tok, rng, length, bos)
            ids, mask = ids[:length], mask[:length]
            # Pad to the profiled length (padding after the sequence is never attended by it).
            pad = length - len(ids)
            x = torch.tensor([ids + [0] * pad], device=device)
            m = torch.tensor([mask[1:] + [0] * pad], device=device, dtype=torch.float32)
            inputs = embed(x).detach().requires_grad_(True)
            RECORDER.active = True
            logits = model(inputs_embeds=inputs, use_cache=False).logits[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
            loss = (nll * m[0]).sum() / m.sum().clamp_min(1.0)
            loss.backward()
            RECORDER.active = False
            supervised += int(m.sum().item())
        sums = RECORDER.sums.cpu().flatten().tolist()
        meta = {"length": length, "block": args.block, "num_layers": cfg.num_hidden_layers,
                "num_heads": cfg.num_attention_heads, "num_blocks": length // args.block,
                "sequences": args.sequences, "supervised_tokens": supervised, "model": args.model,
                "seed": args.seed, "dtype": args.dtype, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
        stem = os.path.join(args.out, f"influence_L{length}")
        influence_file.write(stem, meta, sums)
        print(json.dumps({"wrote": stem, "seconds": round(time.time() - start, 1), "supervised_tokens": supervised}))


if __name__ == "__main__":
    main()
