"""Training batches of tern-demo-llm, built in worker processes (no torch here, so workers start
fast): text windows from the corpus token streams, and line-retrieval records (retrieval.py) with
loss on the answer sentences only. A batch is a pure function of (L, B, seed), so a run's data
depends only on its seed and on the sequence length chosen at each step.

  pool = multiprocessing.get_context("spawn").Pool(n, initializer=batches.init_worker, initargs=...)
  pool.apply_async(batches.make_batch, (L, B, seed))  # -> dict of little-endian int32/int8 bytes
"""
import random
from array import array

import retrieval

_STATE = {}


def init_worker(tokenizer_json, streams, source_probs, cfg):
    """streams: {source: array('i') token ids, documents separated by EOS}; source_probs: {source:
    sampling share}; cfg: retrieval_frac, max_queries, inner_frac, interleaved_frac, bos, eos, pad.
    Returns the state, whose line_tokens / preamble_tokens / qa_tokens (token costs of a record's
    pieces) the main process logs."""
    import os
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per worker process
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    _STATE.update(tok=tok, streams=streams, cfg=cfg, sources=sorted(source_probs),
                  probs=[source_probs[s] for s in sorted(source_probs)])
    sample = retrieval.make_record(random.Random(0), 2000)
    encs = tok.encode_batch([retrieval.line_text(k, v) for k, v in sample], add_special_tokens=False)
    _STATE["line_tokens"] = sum(len(e.ids) for e in encs) / len(encs)
    _STATE["preamble_tokens"] = len(tok.encode(retrieval.PREAMBLE, add_special_tokens=False).ids)
    k, v = sample[0]
    _STATE["qa_tokens"] = len(tok.encode(retrieval.next_question(k) + retrieval.answer_text(k, v),
                                         add_special_tokens=False).ids) + 1
    return _STATE


def _text_seq(rng, L):
    src = rng.choices(_STATE["sources"], weights=_STATE["probs"])[0]
    s = _STATE["streams"][src]
    start = rng.randrange(0, len(s) - (L - 1))
    x = [_STATE["cfg"]["bos"]] + list(s[start:start + L - 1])
    return x, [-100] + x[1:], [0] * L


def record_layout(rng, L, cfg, line_tokens, preamble_tokens, qa_tokens):
    """Chooses (n_lines, n_final_questions, n_inner_questions) for a record of about L tokens.
    Half the records (cfg["interleaved_frac"]) carry questions inside the record too, about a share
    cfg["inner_frac"] of the token budget; the rest ask 1..q_cap questions at the end only, like the
    evaluation, with records biased towards filling the context."""
    budget = L - 1 - preamble_tokens
    q_cap = max(1, min(cfg["max_queries"], int(L / 4 / qa_tokens)))
    if rng.random() < cfg["interleaved_frac"]:
        n_q = max(2, int(cfg["inner_frac"] * budget / qa_tokens))
        n_final = rng.randint(1, max(1, min(q_cap, n_q // 3)))
        n_inner = n_q - n_final
        n_lines = max(2, int((budget - n_q * qa_tokens) / line_tokens * 0.97))
        return n_lines, n_final, n_inner
    n_final = rng.randint(1, q_cap)
    max_lines = max(n_final, 2, int((budget - n_final * qa_tokens) / line_tokens * 0.97))
    n_lines = min(max_lines, max(n_final, 2, int(round(max_lines * rng.random() ** 0.3))))
    return n_lines, n_final, 0


def _retrieval_texts(rng, L, n):
    cfg = _STATE["cfg"]
    out = []
    for _ in range(n):
        n_lines, n_final, n_inner = record_layout(rng, L, cfg, _STATE["line_tokens"],
                                                  _STATE["preamble_tokens"], _STATE["qa_tokens"])
        rec = retrieval.make_record(rng, n_lines)
        finals = [k for k, _ in rng.sample(rec, min(n_final, len(rec)))]
        inner = []
        for _ in range(n_inner):
            i = rng.randrange(1, len(rec))
            inner.append((i, rec[rng.randrange(0, i + 1)][0]))
        out.append(retrieval.build(rec, finals, inner))
    return out


def _retrieval_seqs(rng, L, n):
    cfg = _STATE["cfg"]
    built = _retrieval_texts(rng, L, n)
    encs = _STATE["tok"].encode_batch([t for t, _, _ in built], add_special_tokens=False)
    seqs = []
    for (text, answers, values), enc in zip(built, encs):
        amask = bytearray(len(text) + 1)
        vmask = bytearray(len(text) + 1)
        for a, b in answers:
            amask[a:b] = b"\x01" * (b - a)
        for a, b in values:
            vmask[a:b] = b"\x01" * (b - a)
        ids = [cfg["bos"]] + enc.ids
        starts = [s for s, _ in enc.offsets]
        label = [-100] + [t if amask[s] else -100 for t, s in zip(enc.ids, starts)]
        vm = [0] + [vmask[s] for s in starts]
        if len(ids) > L:  # cut, and drop a partial answer at the end
            ids, label, vm = ids[:L], label[:L], vm[:L]
            while label[-1] != -100:
                ids.pop(); label.pop(); vm.pop()
        pad = L - len(ids)
        seqs.append((ids + [cfg["pad"]] * pad, label + [-100] * pad, vm + [0] * pad))
    return seqs


def make_batch(L, B, seed):
    """B sequences of L tokens: round(B * retrieval_frac) retrieval records last, text windows first.
    Returns {"x", "y": int32 bytes (B*L), "vmask": int8 bytes (B*L, answer-value tokens),
    "is_ret": int8 bytes (B), "L", "B"}."""
    rng = random.Random(seed)
    n_ret = int(round(B * _STATE["cfg"]["retrieval_frac"]))
    seqs = [_text_seq(rng, L) for _ in range(B - n_ret)] + _retrieval_seqs(rng, L, n_ret)
    x, y, v = array("i"), array("i"), array("b")
    for xs, ys, vs in seqs:
        assert len(xs) == len(ys) == len(vs) == L
        x.extend(xs)
        y.extend(ys)
        v.extend(vs)
    is_ret = array("b", [0] * (B - n_ret) + [1] * n_ret)
    return {"x": x.tobytes(), "y": y.tobytes(), "vmask": v.tobytes(), "is_ret": is_ret.tobytes(),
            "L": L, "B": B}
