#!/usr/bin/env python3
"""Trains tern-demo-llm from scratch: a byte-level BPE tokenizer (HF `tokenizers`, Llama-3 split
regex, so numbers split into groups of at most 3 digits) and a small Llama-architecture decoder
(HF transformers LlamaForCausalLM), on the corpus that tools/train/prepare_data.py builds plus
synthetic LongEval-style line-retrieval records (tools/train/retrieval.py, batches.py). Runs on one
CUDA GPU; seeded (the data depends on the seed and on the sequence length of each step;
flash-attention kernels are not bit-deterministic, so a rerun matches closely, not bit for bit).

  python3 tools/train/train_llm.py --data .demo-data --out models/tern-demo-llm

Schedule: a fixed wall-clock budget (--max-train-seconds). The context grows in phases
(--phases, L:B pairs of equal tokens per step); a phase ends when a held-out retrieval probe at
its length reaches --advance-acc, or at the latest when its share of the budget (--phase-end) is
spent. Learning rate: linear warm-up, constant, cosine decay over the last --decay-frac of the
budget.

Writes into --out: config.json, generation_config.json, model.safetensors (float16),
tokenizer.json, tokenizer_config.json (with a chat template) and training_log.json. With
--ckpt-dir it also keeps the latest checkpoint there: model.part0/model.part1 (the two byte halves
of a model.safetensors), meta.tar.gz (every other file of the model directory) and
training_log.json.
"""
import argparse
import io
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import tarfile
import time
from collections import deque

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import batches  # noqa: E402
import retrieval  # noqa: E402

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
# Llama-3's split regex, byte for byte (tern's runtime/tokenizer recognises it by this string).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

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
    ap.add_argument("--ckpt-dir", default=None, help="keep the latest checkpoint here (see above)")
    ap.add_argument("--ckpt-every", type=float, default=90.0, help="seconds between checkpoints")
    ap.add_argument("--tokenizer", default=None, help="reuse this tokenizer.json instead of training one")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--tokenizer-records", type=int, default=1000,
                    help="retrieval records added to the tokenizer's training text")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--max-pos", type=int, default=2048)
    ap.add_argument("--phases", default="512:64,1024:32,2048:16", help="L:B per phase")
    ap.add_argument("--phase-end", default="0.4,0.62",
                    help="budget share by which each phase but the last ends at the latest")
    ap.add_argument("--advance-acc", default="0.95,0.93",
                    help="probe accuracy at the phase's length that ends each phase but the last")
    ap.add_argument("--min-phase-steps", type=int, default=200)
    ap.add_argument("--force-phase-steps", type=int, default=0, help="end each phase after N steps (smoke test)")
    ap.add_argument("--text-frac", type=float, default=0.09375, help="share of text windows per batch")
    ap.add_argument("--interleaved-frac", type=float, default=0.5,
                    help="share of retrieval records with questions inside the record")
    ap.add_argument("--inner-frac", type=float, default=0.4, help="token share of those questions")
    ap.add_argument("--max-queries", type=int, default=16)
    ap.add_argument("--retrieval-weight", type=float, default=1.0)
    ap.add_argument("--source-weights", default="wikitext2-valid=1,kjv=1,fortunes=1",
                    help="multiplies each source's size-proportional sampling share")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay-frac", type=float, default=0.3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--max-train-seconds", type=float, default=400.0, help="the wall-clock budget")
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--probe-every", type=int, default=100)
    ap.add_argument("--probe-cases", type=int, default=128)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--dev-every", type=int, default=500)
    return ap.parse_args()


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def train_tokenizer(texts, vocab_size):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    return tok


def tokenizer_texts(docs, n_records, seed):
    """The corpus plus n_records retrieval records (so the record's fixed words and all digit
    groups get merges)."""
    rng = random.Random(seed)
    texts = [d["text"] for d in docs]
    for _ in range(n_records):
        rec = retrieval.make_record(rng, 30)
        inner = [(i, rec[rng.randrange(0, i + 1)][0]) for i in sorted(rng.sample(range(1, 30), 3))]
        texts.append(retrieval.build(rec, [rec[0][0], rec[1][0]], inner)[0])
    return texts


def lr_at(step, frac, args):
    """frac: share of the wall-clock budget spent."""
    warm = min(1.0, (step + 1) / args.warmup)
    d0 = 1.0 - args.decay_frac
    if frac <= d0:
        return args.lr * warm
    p = min(1.0, (frac - d0) / max(1e-9, args.decay_frac))
    lo = args.lr * args.min_lr_frac
    return warm * (lo + 0.5 * (args.lr - lo) * (1 + math.cos(math.pi * p)))


def build_probe(tok, length, n, seed):
    """n held-out evaluation-format cases (one question at the end) of at most `length` tokens:
    [(ids with BOS, positions of the value tokens)]."""
    enc = lambda t: tok.encode(t, add_special_tokens=False)  # noqa: E731
    sample = retrieval.make_record(random.Random(0), 500)
    line_tokens = sum(len(enc(retrieval.line_text(k, v)).ids) for k, v in sample) / len(sample)
    k, v = sample[0]
    overhead = 1 + len(enc(retrieval.PREAMBLE + retrieval.first_question(k) + retrieval.answer_text(k, v)).ids)
    rng = random.Random(seed * 7919 + length)
    cases = []
    for _ in range(n):
        rec, qi, text, ans, val, e = retrieval.eval_case(
            rng, length, int((length - overhead) / line_tokens) + 2, enc)
        ids = [tok.token_to_id(BOS)] + e.ids
        vpos = [j + 1 for j, (s, _) in enumerate(e.offsets) if val[0] <= s < val[1]]
        cases.append((ids, vpos))
    return cases


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

    import safetensors.torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    print(f"transformers {transformers.__version__}", flush=True)

    phases = [tuple(int(v) for v in p.split(":")) for p in args.phases.split(",")]
    phase_end = [float(v) for v in args.phase_end.split(",") if v]
    advance_acc = [float(v) for v in args.advance_acc.split(",") if v]
    assert len(phase_end) == len(advance_acc) == len(phases) - 1, "one --phase-end/--advance-acc per phase but the last"

    docs = read_jsonl(os.path.join(args.data, "corpus.jsonl"))
    dev_docs = read_jsonl(os.path.join(args.data, "dev.jsonl"))

    t0 = time.time()
    if args.tokenizer:
        tok = Tokenizer.from_file(args.tokenizer)
    else:
        tok = train_tokenizer(tokenizer_texts(docs, args.tokenizer_records, args.seed + 1), args.vocab_size)
    assert tok.get_vocab_size() == args.vocab_size, tok.get_vocab_size()
    bos_id, eos_id, pad_id = tok.token_to_id(BOS), tok.token_to_id(EOS), tok.token_to_id(PAD)
    digit_groups = sum(1 for n in range(1000) if tok.token_to_id(f"{n:03d}") is not None)
    print(f"tokenizer: {tok.get_vocab_size()} tokens in {time.time() - t0:.1f}s; bos {bos_id} eos {eos_id} "
          f"pad {pad_id}; {digit_groups}/1000 three-digit groups are single tokens", flush=True)
    for probe_text in ["The history of", "line lovely-dog: REGISTER_CONTENT is <28840>\n",
                       "The REGISTER_CONTENT in line lovely-dog is <4096>.\n"]:
        print(f"  {probe_text!r} -> {tok.encode(probe_text, add_special_tokens=False).tokens}")

    # Corpus token streams (documents separated by EOS), for the batch workers.
    from array import array
    sw = {kv.split("=")[0]: float(kv.split("=")[1]) for kv in args.source_weights.split(",") if kv}
    by_src = {}
    for d in docs:
        by_src.setdefault(d["src"], []).append(d["text"])
    streams, weights = {}, {}
    for src, texts in sorted(by_src.items()):
        ids = array("i")
        for enc in tok.encode_batch(texts, add_special_tokens=False):
            ids.extend(enc.ids)
            ids.append(eos_id)
        streams[src] = ids
        weights[src] = len(ids) * sw.get(src, 1.0)
    probs = {s: w / sum(weights.values()) for s, w in weights.items()}
    sizes = {s: len(v) for s, v in streams.items()}
    text_bytes = sum(len(d["text"].encode("utf-8")) for d in docs)
    print(f"token streams {sizes} (total {sum(sizes.values())}, {text_bytes / sum(sizes.values()):.2f} bytes/token), "
          f"sampling probs { {s: round(p, 3) for s, p in probs.items()} }", flush=True)
    cfg = {"retrieval_frac": 1.0 - args.text_frac, "max_queries": args.max_queries,
           "interleaved_frac": args.interleaved_frac, "inner_frac": args.inner_frac,
           "bos": bos_id, "eos": eos_id, "pad": pad_id}
    pool = multiprocessing.get_context("spawn").Pool(
        args.workers, initializer=batches.init_worker, initargs=(tok.to_str(), streams, probs, cfg))
    local = batches.init_worker(tok.to_str(), streams, probs, cfg)
    print(f"retrieval line ~{local['line_tokens']:.1f} tokens, preamble {local['preamble_tokens']}, "
          f"question+answer ~{local['qa_tokens']}", flush=True)

    dev_ids = []
    for enc in tok.encode_batch([d["text"] for d in dev_docs], add_special_tokens=False):
        dev_ids += enc.ids + [eos_id]
    dev_ids = torch.tensor(dev_ids)
    probes = {L: build_probe(tok, L, args.probe_cases, args.seed + 3) for L, _ in phases}

    config = LlamaConfig(
        vocab_size=args.vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.max_pos, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id,
        hidden_act="silu", initializer_range=0.02, attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa").to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters (tied embeddings)", flush=True)

    def write_side_files(d):
        """Every file of the model directory but the weights."""
        os.makedirs(d, exist_ok=True)
        config.save_pretrained(d)
        GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id).save_pretrained(d)
        cfg_path = os.path.join(d, "config.json")
        c = json.load(open(cfg_path))
        if "rope_theta" not in c:  # transformers 5 nests it in rope_parameters; older readers want it flat
            c["rope_theta"] = 10000.0
        c["dtype"] = "float16"
        c["architectures"] = ["LlamaForCausalLM"]
        json.dump(c, open(cfg_path, "w"), indent=2, sort_keys=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS,
                   "pad_token": PAD, "model_max_length": args.max_pos, "clean_up_tokenization_spaces": False,
                   "chat_template": CHAT_TEMPLATE}
        json.dump(tok_cfg, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)

    log = {"args": vars(args), "n_params": n_params, "stream_tokens": sizes, "steps": [], "dev": [],
           "probes": [], "phases": [], "checkpoints": []}

    side_dir = os.path.join(args.out + ".side")
    write_side_files(side_dir)

    def publish(weights_path):
        """Copies a model.safetensors (two byte halves) and the side files into --ckpt-dir."""
        if not args.ckpt_dir:
            return
        os.makedirs(args.ckpt_dir, exist_ok=True)
        data = open(weights_path, "rb").read()
        half = len(data) // 2
        for i, part in enumerate((data[:half], data[half:])):
            with open(os.path.join(args.ckpt_dir, f"model.part{i}.tmp"), "wb") as f:
                f.write(part)
            os.replace(os.path.join(args.ckpt_dir, f"model.part{i}.tmp"), os.path.join(args.ckpt_dir, f"model.part{i}"))
        json.dump(log, open(os.path.join(args.ckpt_dir, "training_log.json"), "w"), indent=1)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name in sorted(os.listdir(side_dir)):
                tf.add(os.path.join(side_dir, name), arcname=name)
        open(os.path.join(args.ckpt_dir, "meta.tar.gz"), "wb").write(buf.getvalue())

    def checkpoint(step):
        sd = {k: v.detach().to(torch.float16).cpu().contiguous() for k, v in model.state_dict().items()
              if k != "lm_head.weight"}
        path = os.path.join(side_dir + ".ckpt.safetensors")
        safetensors.torch.save_file(sd, path, metadata={"format": "pt"})
        log["checkpoints"].append({"step": step, "elapsed": time.time() - t_train})
        publish(path)
        print(f"  checkpoint at step {step}", flush=True)

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
        L = phases[-1][0]
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

    @torch.no_grad()
    def probe(L):
        """Share of held-out cases whose value tokens are all the argmax (teacher-forced)."""
        model.eval()
        cases, ok = probes[L], 0
        bs = max(1, 32768 // L)
        for b in range(0, len(cases), bs):
            group = cases[b:b + bs]
            width = max(len(ids) for ids, _ in group)
            x = torch.full((len(group), width), pad_id, dtype=torch.long)
            for i, (ids, _) in enumerate(group):
                x[i, :len(ids)] = torch.tensor(ids)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                pred = model(input_ids=x.to(dev)).logits.argmax(-1).cpu()
            for i, (ids, vpos) in enumerate(group):
                ok += all(pred[i, p - 1].item() == ids[p] for p in vpos)
        model.train()
        return ok / len(cases)

    model.train()
    t_train = time.time()
    budget = args.max_train_seconds
    tokens_seen, text_tokens, last_t, last_tokens = 0, 0, time.time(), 0
    phase, phase_step0 = 0, 0
    L, B = phases[0]
    log["phases"].append({"L": L, "B": B, "step": 0, "elapsed": 0.0})
    pending, submitted = deque(), 0
    last_ckpt = time.time()
    step = 0
    while True:
        elapsed = time.time() - t_train
        if step >= args.max_steps or elapsed >= budget:
            break
        frac = elapsed / budget
        while len(pending) < 2 * args.workers:
            pending.append(pool.apply_async(batches.make_batch, (L, B, args.seed * 1_000_003 + submitted)))
            submitted += 1
        b = pending.popleft().get()
        if b["L"] != L:  # prefetched before the phase changed
            continue
        x = torch.frombuffer(bytearray(b["x"]), dtype=torch.int32).view(B, L).long()
        y = torch.frombuffer(bytearray(b["y"]), dtype=torch.int32).view(B, L).long()
        vmask = torch.frombuffer(bytearray(b["vmask"]), dtype=torch.int8).view(B, L).bool()
        is_ret = torch.frombuffer(bytearray(b["is_ret"]), dtype=torch.int8).bool()
        x, y, is_ret, vmask = (t.to(dev, non_blocking=True) for t in (x, y, is_ret, vmask))
        lr = lr_at(step, frac, args)
        for g in opt.param_groups:
            g["lr"] = lr
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
        text_tokens += (B - int(round(B * (1.0 - args.text_frac)))) * (L - 1)
        if step % args.log_every == 0:
            with torch.no_grad():
                vm = vmask[:, 1:]
                # Share of answer-value tokens predicted right (teacher-forced, this batch).
                vacc = ((lp.argmax(-1) == tgt) & vm).sum() / vm.sum().clamp(min=1)
            now = time.time()
            rate = (tokens_seen - last_tokens) / (now - last_t)
            last_t, last_tokens = now, tokens_seen
            rec = {"step": step, "L": L, "lr": lr, "text_loss": text_loss.item(),
                   "retrieval_loss": ret_loss.item(), "value_token_acc": vacc.item(),
                   "grad_norm": gnorm.item(), "tokens": tokens_seen, "elapsed": now - t_train}
            log["steps"].append(rec)
            print(f"step {step:5d} L {L:4d} lr {lr:.2e} text {rec['text_loss']:.3f} "
                  f"retr {rec['retrieval_loss']:.3f} value-acc {rec['value_token_acc']:.3f} "
                  f"gnorm {rec['grad_norm']:.2f} {rate / 1e3:.0f}k tok/s  {now - t_train:.0f}s"
                  f"{'' if compiled else ' (eager)'}", flush=True)
        if step > 0 and step % args.dev_every == 0:
            d = dev_loss()
            log["dev"].append({"step": step, "dev_loss": d})
            print(f"  dev (held-out WikiText-2 valid articles) loss {d:.3f} ppl {math.exp(d):.1f}", flush=True)
        step += 1
        in_phase = step - phase_step0
        if in_phase % args.probe_every == 0:
            accs = {str(Lp): probe(Lp) for Lp in sorted({L, phases[-1][0]})}
            log["probes"].append({"step": step, "L": L, "elapsed": time.time() - t_train, "acc": accs})
            print(f"  probe (teacher-forced value, {args.probe_cases} held-out cases): "
                  + "  ".join(f"@{k} {100 * v:.1f}%" for k, v in accs.items()), flush=True)
            if phase < len(phases) - 1:
                frac = (time.time() - t_train) / budget
                done = (accs[str(L)] >= advance_acc[phase] and in_phase >= args.min_phase_steps)
                if (args.force_phase_steps and in_phase >= args.force_phase_steps) or done or frac >= phase_end[phase]:
                    phase += 1
                    phase_step0 = step
                    L, B = phases[phase]
                    log["phases"].append({"L": L, "B": B, "step": step, "elapsed": time.time() - t_train,
                                          "reason": "probe" if done else "time/forced"})
                    print(f"PHASE {phase}: L {L} x B {B} from step {step} "
                          f"({'probe reached' if done else 'time share or forced'})", flush=True)
            if args.ckpt_dir and time.time() - last_ckpt >= args.ckpt_every:
                checkpoint(step)
                last_ckpt = time.time()
        elif args.force_phase_steps and in_phase >= args.force_phase_steps and phase < len(phases) - 1:
            phase += 1
            phase_step0 = step
            L, B = phases[phase]
            log["phases"].append({"L": L, "B": B, "step": step, "elapsed": time.time() - t_train, "reason": "forced"})
            print(f"PHASE {phase}: L {L} x B {B} from step {step} (forced)", flush=True)
    pool.terminate()
    train_seconds = time.time() - t_train
    final = {str(Lp): probe(Lp) for Lp, _ in phases}
    d = dev_loss()
    log["dev"].append({"step": step, "dev_loss": d})
    log.update({"train_seconds": train_seconds, "total_seconds": time.time() - t_start,
                "tokens_seen": tokens_seen, "text_tokens_seen": text_tokens, "steps_done": step, "compiled": compiled, "final_probe": final,
                "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                "transformers": transformers.__version__})
    print(f"trained {step} steps, {tokens_seen / 1e6:.1f}M tokens ({text_tokens / 1e6:.1f}M text) in {train_seconds:.0f}s; final probe "
          + "  ".join(f"@{k} {100 * v:.1f}%" for k, v in final.items())
          + f"; dev loss {d:.3f} ppl {math.exp(d):.1f}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    model = model.to(torch.float16)
    model.save_pretrained(args.out, safe_serialization=True)
    write_side_files(args.out)
    json.dump(log, open(os.path.join(args.out, "training_log.json"), "w"), indent=1)
    shutil.copy(os.path.join(args.out, "training_log.json"), os.path.join(side_dir, "training_log.json"))
    publish(os.path.join(args.out, "model.safetensors"))
    print("saved to", args.out, sorted(os.listdir(args.out)), flush=True)


if __name__ == "__main__":
    main()
