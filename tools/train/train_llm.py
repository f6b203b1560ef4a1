#!/usr/bin/env python3
"""Trains tern-demo-llm from scratch: a byte-level BPE tokenizer (HF `tokenizers`) and a small
Llama-architecture decoder (HF transformers LlamaForCausalLM), on the corpus that
tools/train/prepare_data.py builds plus synthetic LongEval-style line-retrieval sequences
(tools/train/retrieval.py). Runs on one CUDA GPU; seeded (cuDNN/flash-attention kernels are not
bit-deterministic, so a rerun matches closely, not bit for bit).

  python3 tools/train/train_llm.py --data .demo-data --out models/tern-demo-llm

Writes into --out: config.json, generation_config.json, model.safetensors (float16),
tokenizer.json, tokenizer_config.json (with a chat template) and training_log.json.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import retrieval  # noqa: E402

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}Question: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}Answer: {{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".demo-data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--max-pos", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--phase1-frac", type=float, default=0.5, help="share of steps at --seq1")
    ap.add_argument("--seq1", type=int, default=512)
    ap.add_argument("--batch1", type=int, default=128)
    ap.add_argument("--seq2", type=int, default=2048)
    ap.add_argument("--batch2", type=int, default=32)
    ap.add_argument("--retrieval-frac", type=float, default=0.875, help="share of sequences per batch")
    ap.add_argument("--max-queries", type=int, default=16)
    ap.add_argument("--retrieval-weight", type=float, default=1.0)
    ap.add_argument("--source-weights", default="wikitext2-valid=1,kjv=1,fortunes=1",
                    help="multiplies each source's size-proportional sampling share")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--max-train-seconds", type=float, default=1e9,
                    help="safety stop; the log records the step reached if it fires")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--dev-every", type=int, default=200)
    return ap.parse_args()


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def train_tokenizer(texts, vocab_size, seed):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    return tok


class Batcher:
    def __init__(self, tok, docs, source_weights, args, rng):
        self.tok, self.args, self.rng = tok, args, rng
        self.bos, self.eos, self.pad = tok.token_to_id(BOS), tok.token_to_id(EOS), tok.token_to_id(PAD)
        by_src = {}
        for d in docs:
            by_src.setdefault(d["src"], []).append(d["text"])
        self.streams, weights = {}, {}
        for src, texts in sorted(by_src.items()):
            ids = []
            for enc in tok.encode_batch(texts, add_special_tokens=False):
                ids.extend(enc.ids)
                ids.append(self.eos)
            self.streams[src] = torch.tensor(ids, dtype=torch.int32)
            weights[src] = len(ids) * source_weights.get(src, 1.0)
        total = sum(weights.values())
        self.sources = sorted(weights)
        self.probs = [weights[s] / total for s in self.sources]
        # Token cost of the retrieval pieces, to size records.
        sample = retrieval.make_record(random.Random(0), 2000)
        lens = [len(e.ids) for e in tok.encode_batch([retrieval.line_text(k, v) for k, v in sample],
                                                       add_special_tokens=False)]
        self.line_tokens = sum(lens) / len(lens)
        self.preamble_tokens = len(tok.encode(retrieval.PREAMBLE, add_special_tokens=False).ids)
        k, v = sample[0]
        self.qa_tokens = len(tok.encode(retrieval.first_question(k) + retrieval.answer_text(k, v),
                                        add_special_tokens=False).ids) + 2

    def stream_sizes(self):
        return {s: int(self.streams[s].numel()) for s in self.sources}

    def text_seq(self, L):
        src = self.rng.choices(self.sources, weights=self.probs)[0]
        s = self.streams[src]
        start = self.rng.randrange(0, s.numel() - (L - 1))
        x = torch.empty(L, dtype=torch.int64)
        x[0] = self.bos
        x[1:] = s[start:start + L - 1]
        y = x.clone()
        y[0] = -100
        return x, y

    def retrieval_texts(self, L, n):
        out = []
        for _ in range(n):
            # At most a third of the sequence goes to questions.
            q_cap = max(1, min(self.args.max_queries, int(L / 3 / self.qa_tokens)))
            nq = self.rng.randint(1, q_cap)
            budget = L - 1 - self.preamble_tokens - nq * self.qa_tokens
            max_lines = max(nq, int(budget / self.line_tokens * 0.97))
            # Biased towards long records: long-range retrieval is the hard part.
            n_lines = max(nq, 2, int(round(max_lines * self.rng.random() ** 0.5)))
            n_lines = min(n_lines, max_lines)
            rec = retrieval.make_record(self.rng, n_lines)
            queries = [k for k, _ in self.rng.sample(rec, nq)]
            out.append(retrieval.build(rec, queries))
        return out

    def retrieval_seqs(self, L, n):
        built = self.retrieval_texts(L, n)
        # The record and the questions are encoded apart (they meet at a pre-tokenizer boundary),
        # so that only the short question part needs its offsets.
        cut = [t.rindex("Now the record is over.", 0, a[0][0]) for (t, a, _) in built]
        recs = self.tok.encode_batch([t[:c] for (t, _, _), c in zip(built, cut)], add_special_tokens=False)
        qas = self.tok.encode_batch([t[c:] for (t, _, _), c in zip(built, cut)], add_special_tokens=False)
        xs, ys, vs = [], [], []
        for (text, answers, values), c, rec, qa in zip(built, cut, recs, qas):
            ids = [self.bos] + rec.ids + qa.ids
            label = [-100] * len(ids)
            vmask = [False] * len(ids)
            base = 1 + len(rec.ids)
            for j, (s, _) in enumerate(qa.offsets):
                s += c
                if any(a <= s < b for a, b in answers):
                    label[base + j] = ids[base + j]
                if any(a <= s < b for a, b in values):
                    vmask[base + j] = True
            if len(ids) > L:  # rare: cut, and drop a partial answer at the end
                ids, label, vmask = ids[:L], label[:L], vmask[:L]
                while label[-1] != -100:
                    ids.pop(); label.pop(); vmask.pop()
            pad = L - len(ids)
            xs.append(torch.tensor(ids + [self.pad] * pad))
            ys.append(torch.tensor(label + [-100] * pad))
            vs.append(torch.tensor(vmask + [False] * pad))
        return torch.stack(xs), torch.stack(ys), torch.stack(vs)

    def batch(self, L, B):
        n_ret = int(round(B * self.args.retrieval_frac))
        xt, yt = zip(*[self.text_seq(L) for _ in range(B - n_ret)]) if B > n_ret else ((), ())
        x = list(xt)
        y = list(yt)
        is_ret = torch.zeros(B, dtype=torch.bool)
        vmask = torch.zeros(B, L, dtype=torch.bool)
        if n_ret:
            xr, yr, vr = self.retrieval_seqs(L, n_ret)
            x += list(xr)
            y += list(yr)
            is_ret[B - n_ret:] = True
            vmask[B - n_ret:] = vr
        return torch.stack(x), torch.stack(y), is_ret, vmask


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    p = (step - args.warmup) / max(1, args.steps - args.warmup)
    lo = args.lr * args.min_lr_frac
    return lo + 0.5 * (args.lr - lo) * (1 + math.cos(math.pi * min(1.0, p)))


def main():
    args = parse_args()
    t_start = time.time()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.cuda.manual_seed_all(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}  torch {torch.__version__}", flush=True)

    import transformers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    print(f"transformers {transformers.__version__}", flush=True)

    docs = read_jsonl(os.path.join(args.data, "corpus.jsonl"))
    dev_docs = read_jsonl(os.path.join(args.data, "dev.jsonl"))

    # Tokenizer: trained on the text plus a little retrieval text (so its fixed words get merges).
    t0 = time.time()
    trng = random.Random(args.seed + 1)
    tok_texts = [d["text"] for d in docs]
    for _ in range(200):
        rec = retrieval.make_record(trng, 30)
        tok_texts.append(retrieval.build(rec, [rec[0][0], rec[1][0]])[0])
    tok = train_tokenizer(tok_texts, args.vocab_size, args.seed)
    assert tok.get_vocab_size() == args.vocab_size, tok.get_vocab_size()
    bos_id, eos_id, pad_id = tok.token_to_id(BOS), tok.token_to_id(EOS), tok.token_to_id(PAD)
    print(f"tokenizer: {tok.get_vocab_size()} tokens in {time.time() - t0:.1f}s; bos {bos_id} eos {eos_id} pad {pad_id}")
    print("  'The history of' ->", tok.encode("The history of", add_special_tokens=False).tokens)

    sw = {kv.split("=")[0]: float(kv.split("=")[1]) for kv in args.source_weights.split(",") if kv}
    rng = random.Random(args.seed + 2)
    t0 = time.time()
    batcher = Batcher(tok, docs, sw, args, rng)
    sizes = batcher.stream_sizes()
    print(f"token streams {sizes} (total {sum(sizes.values())}), sampling probs "
          f"{dict(zip(batcher.sources, [round(p, 3) for p in batcher.probs]))}; "
          f"retrieval line ~{batcher.line_tokens:.1f} tokens; {time.time() - t0:.1f}s", flush=True)
    dev_ids = []
    for enc in tok.encode_batch([d["text"] for d in dev_docs], add_special_tokens=False):
        dev_ids += enc.ids + [eos_id]
    dev_ids = torch.tensor(dev_ids)

    config = LlamaConfig(
        vocab_size=args.vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.max_pos, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id,
        hidden_act="silu", initializer_range=0.02, attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa").to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters (tied embeddings)", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    fwd = torch.compile(model, dynamic=False) if args.compile else model
    compiled = bool(args.compile)

    def logits_of(x):
        nonlocal fwd, compiled
        with torch.autocast("cuda", dtype=torch.bfloat16):
            try:
                return fwd(input_ids=x).logits
            except Exception as e:  # torch.compile trouble: fall back to eager, once
                if not compiled:
                    raise
                print(f"torch.compile failed ({type(e).__name__}: {e}); continuing eagerly", flush=True)
                fwd, compiled = model, False
                return model(input_ids=x).logits

    @torch.no_grad()
    def dev_loss():
        model.eval()
        L = args.seq2
        n = (dev_ids.numel() - 1) // (L - 1)
        tot, cnt = 0.0, 0
        for i in range(n):
            x = torch.cat([torch.tensor([bos_id]), dev_ids[i * (L - 1):(i + 1) * (L - 1)]]).to(dev)[None]
            with torch.autocast("cuda", dtype=torch.bfloat16):
                lg = model(input_ids=x).logits.float()
            tot += F.cross_entropy(lg[0, :-1], x[0, 1:], reduction="sum").item()
            cnt += L - 1
        model.train()
        return tot / max(cnt, 1)

    phase1 = int(args.steps * args.phase1_frac)
    log = {"args": vars(args), "n_params": n_params, "stream_tokens": sizes, "steps": [], "dev": []}
    model.train()
    t_train = time.time()
    tokens_seen, last_t, last_tokens = 0, time.time(), 0
    stopped_early = None
    step = 0
    for step in range(args.steps):
        L, B = (args.seq1, args.batch1) if step < phase1 else (args.seq2, args.batch2)
        x, y, is_ret, vmask = batcher.batch(L, B)
        x, y, is_ret, vmask = (t.to(dev, non_blocking=True) for t in (x, y, is_ret, vmask))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        logits = logits_of(x)
        lp = logits[:, :-1].float()
        tgt = y[:, 1:]
        per_tok = F.cross_entropy(lp.reshape(-1, lp.size(-1)), tgt.reshape(-1), ignore_index=-100,
                                  reduction="none").view(tgt.shape)
        valid = tgt != -100
        tmask = valid & ~is_ret[:, None]
        rmask = valid & is_ret[:, None]
        text_loss = (per_tok * tmask).sum() / tmask.sum().clamp(min=1)
        ret_loss = (per_tok * rmask).sum() / rmask.sum().clamp(min=1)
        loss = text_loss + args.retrieval_weight * ret_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        tokens_seen += B * L
        if step % args.log_every == 0 or step == args.steps - 1:
            with torch.no_grad():
                vm = vmask[:, 1:]
                # Share of answer-value tokens predicted right (teacher-forced, this batch).
                vacc = ((lp.argmax(-1) == tgt) & vm).sum() / vm.sum().clamp(min=1)
            now = time.time()
            rate = (tokens_seen - last_tokens) / (now - last_t)
            last_t, last_tokens = now, tokens_seen
            rec = {"step": step, "L": L, "lr": lr_at(step, args), "text_loss": text_loss.item(),
                   "retrieval_loss": ret_loss.item(), "value_token_acc": vacc.item(),
                   "grad_norm": gnorm.item(), "tokens": tokens_seen, "elapsed": now - t_train}
            log["steps"].append(rec)
            print(f"step {step:5d} L {L:4d} lr {rec['lr']:.2e} text {rec['text_loss']:.3f} "
                  f"retr {rec['retrieval_loss']:.3f} value-acc {rec['value_token_acc']:.3f} "
                  f"gnorm {rec['grad_norm']:.2f} {rate / 1e3:.0f}k tok/s  {now - t_train:.0f}s"
                  f"{'' if compiled else ' (eager)'}", flush=True)
        if (step % args.dev_every == 0 and step > 0) or step == args.steps - 1:
            d = dev_loss()
            log["dev"].append({"step": step, "dev_loss": d})
            print(f"  dev (held-out WikiText-2 valid articles) loss {d:.3f} ppl {math.exp(d):.1f}", flush=True)
        if time.time() - t_train > args.max_train_seconds:
            stopped_early = step + 1
            print(f"STOPPED EARLY by --max-train-seconds after {step + 1} steps", flush=True)
            break
    train_seconds = time.time() - t_train
    log.update({"train_seconds": train_seconds, "total_seconds": time.time() - t_start,
                "tokens_seen": tokens_seen, "stopped_early_after_steps": stopped_early,
                "steps_done": step + 1, "compiled": compiled,
                "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                "transformers": transformers.__version__})
    print(f"trained {step + 1} steps, {tokens_seen / 1e6:.1f}M tokens in {train_seconds:.0f}s", flush=True)

    os.makedirs(args.out, exist_ok=True)
    model = model.to(torch.float16)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(args.out, safe_serialization=True)
    cfg_path = os.path.join(args.out, "config.json")
    cfg = json.load(open(cfg_path))
    if "rope_theta" not in cfg:  # transformers 5 nests it in rope_parameters; older readers want it flat
        cfg["rope_theta"] = 10000.0
        json.dump(cfg, open(cfg_path, "w"), indent=2, sort_keys=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
        "model_max_length": args.max_pos,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    json.dump(tok_cfg, open(os.path.join(args.out, "tokenizer_config.json"), "w"), indent=2)
    json.dump(log, open(os.path.join(args.out, "training_log.json"), "w"), indent=1)
    print("saved to", args.out, sorted(os.listdir(args.out)), flush=True)


if __name__ == "__main__":
    main()
