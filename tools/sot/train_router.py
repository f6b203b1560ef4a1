#!/usr/bin/env python3
"""Trains the SoT-R router: L2-regularised logistic regression over lowercase word n-grams that says
whether a question suits Skeleton-of-Thought (label 1) or not (label 0). Python 3 standard library only.

  python3 tools/sot/train_router.py [--data tests/data/sot/lima/router.csv] [--out models/sot-router/router.json] \
      [--jobs N]

Trains on LIMA only. The hyper-parameters (n-gram orders, minimum document frequency, feature value,
regularisation) are chosen by the lowest out-of-fold log-loss of repeated stratified k-fold
cross-validation on LIMA, then the threshold by the highest out-of-fold accuracy of the chosen setting;
the final model is fitted on all of LIMA. Vicuna-80 is never read here (tools/sot/eval_router.py reports
it). Deterministic: fixed fold seeds, a deterministic optimiser, sorted output.

The scoring rule (runtime/sot/trained_router.h implements the same; `score` below is the reference):
  1. Tokens: the question's UTF-8 bytes; A-Z become a-z; a token is a maximal run of bytes in [a-z0-9];
     every other byte (punctuation, whitespace, control, and every byte >= 0x80) separates tokens.
  2. Features: for each order n in `orders`, every run of n consecutive tokens joined by one space; for
     n >= 2 the sequence is first prefixed with the marker `bos` (so "<s> how" marks a leading "how").
  3. The distinct features found in `weights` (duplicates count once) are taken in ascending byte order
     of their keys; s = their weights summed in that order; k = how many there are.
  4. z = bias + s / sqrt(k) for value "l2" (each feature worth 1/sqrt(k): a unit-length vector), or
     z = bias + s for value "binary"; z = bias when k = 0.
  5. score = 1 / (1 + exp(-z)) (computed as exp(z) / (1 + exp(z)) for z < 0); suits SoT when
     score >= threshold.
"""
import argparse
import csv
import hashlib
import json
import math
import multiprocessing
import operator
import os
import random
import sys

FORMAT = "tern-sot-router"
FORMAT_VERSION = 1
TOKENIZER = "ascii-alnum-lower-v1"
BOS = "<s>"
REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Byte table for step 1: A-Z -> a-z, a-z and 0-9 kept, every other byte -> a space.
_TOKEN_TABLE = bytes(
    (b + 32) if 65 <= b <= 90 else b if (97 <= b <= 122 or 48 <= b <= 57) else 32 for b in range(256))

# The grid cross-validation searches.
GRID_ORDERS = [(1,), (1, 2)]
GRID_MIN_COUNT = [2, 3, 5, 8, 12]
GRID_VALUE = ["l2", "binary"]
GRID_LAMBDA = {"l2": [10.0, 3.0, 1.0, 0.3, 0.1, 0.03], "binary": [30.0, 10.0, 3.0, 1.0, 0.3]}
THRESHOLDS = [round(0.05 + 0.01 * i, 2) for i in range(91)]  # 0.05 .. 0.95
WEIGHT_DECIMALS = 6


def read_router_csv(path):
    """Rows of `label;request` (header first; RFC 4180 quoting, `;` separated) -> [(label, text)]."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter=";", quotechar='"'))
    if not rows or rows[0] != ["label", "request"]:
        raise ValueError(f"{path}: header is not label;request")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or row[0] not in ("0", "1"):
            raise ValueError(f"{path}: row {line}: expected label;request with label 0 or 1")
        out.append((int(row[0]), row[1]))
    return out


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tokenize(text):
    """Step 1 of the scoring rule."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    return data.translate(_TOKEN_TABLE).decode("ascii").split()


def ngrams(tokens, orders, bos):
    """Step 2: every feature occurrence (duplicates included), orders ascending."""
    out = []
    for n in orders:
        seq = tokens if n == 1 or bos is None else [bos] + tokens
        out.extend(" ".join(seq[i:i + n]) for i in range(len(seq) - n + 1))
    return out


def sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class Router:
    """A router.json in memory; `score` is the reference scoring rule."""

    def __init__(self, doc):
        spec = doc["features"]
        self.orders = tuple(spec["orders"])
        self.bos = spec.get("bos")
        self.value = spec["value"]
        self.bias = float(doc["bias"])
        self.threshold = float(doc["threshold"])
        keys = sorted(doc["weights"])  # Python's str order is byte order for these ASCII keys
        self.index = {k: i for i, k in enumerate(keys)}
        self.weights = [float(doc["weights"][k]) for k in keys]

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def score(self, text):
        ids = sorted({self.index[f] for f in ngrams(tokenize(text), self.orders, self.bos) if f in self.index})
        s = 0.0
        for i in ids:
            s += self.weights[i]
        z = self.bias
        if ids:
            z += s / math.sqrt(len(ids)) if self.value == "l2" else s
        return sigmoid(z)


# ---- training ---------------------------------------------------------------------------------------


def build_vocab(feature_sets, min_count):
    """Features present in at least min_count of the given documents, in byte order."""
    df = {}
    for feats in feature_sets:
        for f in feats:
            df[f] = df.get(f, 0) + 1
    return sorted(f for f, c in df.items() if c >= min_count)


def encode(feature_sets, vocab, value):
    """Each document as (ascending feature ids, per-feature value)."""
    index = {f: i for i, f in enumerate(vocab)}
    docs = []
    for feats in feature_sets:
        ids = sorted({index[f] for f in feats if f in index})
        c = (1.0 / math.sqrt(len(ids)) if ids else 0.0) if value == "l2" else 1.0
        docs.append((ids, c))
    return docs


class Problem:
    """sum_i logloss(y_i, bias + c_i * sum_{j in ids_i} w_j) + lam/2 * |w|^2 (the bias is not penalised)."""

    def __init__(self, docs, labels, dim):
        self.docs = docs
        self.labels = labels
        self.dim = dim
        self.cols = [[] for _ in range(dim)]
        for i, (ids, _) in enumerate(docs):
            for j in ids:
                self.cols[j].append(i)

    def margins(self, x):
        w, b = x, x[-1]
        get = w.__getitem__
        return [b + c * sum(map(get, ids)) for ids, c in self.docs]

    def value_and_grad(self, x, lam):
        zs = self.margins(x)
        loss = 0.0
        resid = []
        for z, y, (_, c) in zip(zs, self.labels, self.docs):
            # log(1 + exp(z)) - y z, stable on both sides.
            loss += (z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))) - y * z
            resid.append(sigmoid(z) - y)
        rc = [r * c for r, (_, c) in zip(resid, self.docs)]
        get = rc.__getitem__
        w = x[:-1]
        grad = [sum(map(get, col)) + lam * wj for col, wj in zip(self.cols, w)]
        grad.append(sum(resid))
        loss += 0.5 * lam * sum(map(operator.mul, w, w))
        return loss, grad


def _dot(a, b):
    return sum(map(operator.mul, a, b))


def fit(problem, lam, x0=None, max_iter=400, memory=8, gtol=1e-5):
    """L-BFGS with Armijo backtracking; returns the parameter vector (weights then bias)."""
    x = list(x0) if x0 is not None else [0.0] * (problem.dim + 1)
    f, g = problem.value_and_grad(x, lam)
    hist = []
    for _ in range(max_iter):
        if max(map(abs, g)) <= gtol * max(1.0, len(problem.docs) ** 0.5):
            break
        # Two-loop recursion: d = -H g.
        q = list(g)
        alphas = []
        for s, y, rho in reversed(hist):
            a = rho * _dot(s, q)
            alphas.append(a)
            q = [qi - a * yi for qi, yi in zip(q, y)]
        if hist:
            s, y, _ = hist[-1]
            gamma = _dot(s, y) / _dot(y, y)
        else:
            gamma = 1.0 / max(1.0, math.sqrt(_dot(g, g)))
        r = [gamma * qi for qi in q]
        for (s, y, rho), a in zip(hist, reversed(alphas)):
            b = rho * _dot(y, r)
            r = [ri + (a - b) * si for ri, si in zip(r, s)]
        d = [-ri for ri in r]
        slope = _dot(g, d)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            hist = []
            d = [-gi for gi in g]
            slope = -_dot(g, g)
        step = 1.0
        while True:
            xn = [xi + step * di for xi, di in zip(x, d)]
            fn, gn = problem.value_and_grad(xn, lam)
            if fn <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s = [a - b for a, b in zip(xn, x)]
        y = [a - b for a, b in zip(gn, g)]
        sy = _dot(s, y)
        if sy > 1e-12:
            hist.append((s, y, 1.0 / sy))
            if len(hist) > memory:
                hist.pop(0)
        done = abs(f - fn) <= 1e-12 * max(1.0, abs(f))
        x, f, g = xn, fn, gn
        if done:
            break
    return x


def predict(problem_docs, x):
    b = x[-1]
    get = x.__getitem__
    return [sigmoid(b + c * sum(map(get, ids))) for ids, c in problem_docs]


# ---- metrics ----------------------------------------------------------------------------------------


def classification_metrics(labels, predicted):
    tp = sum(1 for y, p in zip(labels, predicted) if y == 1 and p == 1)
    fp = sum(1 for y, p in zip(labels, predicted) if y == 0 and p == 1)
    fn = sum(1 for y, p in zip(labels, predicted) if y == 1 and p == 0)
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": len(labels), "accuracy": (tp + tn) / len(labels), "precision": precision, "recall": recall,
            "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def log_loss(labels, scores):
    eps = 1e-15
    return -sum(math.log(min(max(p if y else 1 - p, eps), 1.0)) for y, p in zip(labels, scores)) / len(labels)


def auc(labels, scores):
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return float("nan")
    return (sum(r for r, y in zip(ranks, labels) if y) - pos * (pos + 1) / 2) / (pos * neg)


def best_threshold(labels, scores):
    """The threshold of THRESHOLDS with the highest accuracy; ties go to the one nearest 0.5, then lower."""
    def key(t):
        correct = sum(1 for y, p in zip(labels, scores) if (p >= t) == (y == 1))
        return (correct, -abs(t - 0.5), -t)
    return max(THRESHOLDS, key=key)


# ---- cross-validation -------------------------------------------------------------------------------


def stratified_folds(labels, k, seed):
    """fold[i] for every example: each class shuffled with random.Random(seed), dealt round-robin."""
    rng = random.Random(seed)
    fold = [0] * len(labels)
    for cls in (0, 1):
        members = [i for i, y in enumerate(labels) if y == cls]
        rng.shuffle(members)
        for pos, i in enumerate(members):
            fold[i] = pos % k
    return fold


def _cv_task(task):
    """One (repeat, fold, orders, min_count, value) cell: out-of-fold scores along the lambda path."""
    texts, labels, fold, f, orders, min_count, value = task
    feats = [set(ngrams(tokenize(t), orders, BOS)) for t in texts]
    train = [i for i in range(len(texts)) if fold[i] != f]
    test = [i for i in range(len(texts)) if fold[i] == f]
    vocab = build_vocab([feats[i] for i in train], min_count)
    problem = Problem(encode([feats[i] for i in train], vocab, value), [labels[i] for i in train], len(vocab))
    test_docs = encode([feats[i] for i in test], vocab, value)
    out = []
    x = None
    for lam in GRID_LAMBDA[value]:  # largest first: each fit warm-starts the next
        x = fit(problem, lam, x)
        out.append((lam, test, predict(test_docs, x)))
    return len(vocab), out


def cross_validate(texts, labels, folds, repeats, seed, jobs, log):
    """Out-of-fold scores for every grid point: {(orders, min_count, value, lam): [scores per repeat]}.
    The cells are independent, so --jobs changes only the wall time, never the result."""
    tasks, keys = [], []
    for r in range(repeats):
        fold = stratified_folds(labels, folds, seed + r)
        for f in range(folds):
            for orders in GRID_ORDERS:
                for min_count in GRID_MIN_COUNT:
                    for value in GRID_VALUE:
                        tasks.append((texts, labels, fold, f, orders, min_count, value))
                        keys.append((r, f, orders, min_count, value))
    if jobs > 1:
        with multiprocessing.Pool(jobs) as pool:
            results = pool.map(_cv_task, tasks, chunksize=1)
    else:
        results = [_cv_task(t) for t in tasks]
    oof = {}
    for (r, f, orders, min_count, value), (vocab_size, path) in zip(keys, results):
        log(f"repeat {r} fold {f} orders {orders} min_count {min_count} value {value}: vocab {vocab_size}")
        for lam, test, scores in path:
            runs = oof.setdefault((orders, min_count, value, lam), [[0.0] * len(texts) for _ in range(repeats)])
            for i, p in zip(test, scores):
                runs[r][i] = p
    return oof


def summarize(labels, runs, threshold):
    """Mean over repeats of each out-of-fold figure."""
    per_run = []
    for scores in runs:
        m = classification_metrics(labels, [1 if p >= threshold else 0 for p in scores])
        m["log_loss"] = log_loss(labels, scores)
        m["auc"] = auc(labels, scores)
        per_run.append(m)
    keys = ["accuracy", "precision", "recall", "f1", "log_loss", "auc"]
    return {k: sum(m[k] for m in per_run) / len(per_run) for k in keys}


def dump_router(doc):
    """router.json text: top-level keys in a fixed order, one weight per line, sorted."""
    head = {k: v for k, v in doc.items() if k != "weights"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)},")
    weights = doc["weights"]
    lines.append('  "weights": {')
    keys = sorted(weights)
    for n, k in enumerate(keys):
        lines.append(f"    {json.dumps(k)}: {json.dumps(weights[k])}{',' if n + 1 < len(keys) else ''}")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(REPO_ROOT, "tests/data/sot/lima/router.csv"))
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "models/sot-router/router.json"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for cross-validation")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    rows = read_router_csv(args.data)
    texts = [t for _, t in rows]
    labels = [y for y, _ in rows]
    oof = cross_validate(texts, labels, args.folds, args.repeats, args.seed, args.jobs, log)

    # Model selection: the lowest mean out-of-fold log-loss; then the threshold for accuracy.
    def mean_log_loss(key):
        return sum(log_loss(labels, s) for s in oof[key]) / len(oof[key])

    table = sorted(oof, key=lambda k: (mean_log_loss(k), str(k)))
    for key in table[:10]:
        log(f"cv log-loss {mean_log_loss(key):.4f}: orders {key[0]} min_count {key[1]} value {key[2]} "
            f"lambda {key[3]}")
    orders, min_count, value, lam = table[0]
    pooled_labels = labels * args.repeats
    pooled_scores = [p for run in oof[table[0]] for p in run]
    threshold = best_threshold(pooled_labels, pooled_scores)
    cv = summarize(labels, oof[table[0]], threshold)
    cv_at_half = summarize(labels, oof[table[0]], 0.5)

    # The final model on all of LIMA.
    feats = [set(ngrams(tokenize(t), orders, BOS)) for t in texts]
    vocab = build_vocab(feats, min_count)
    problem = Problem(encode(feats, vocab, value), labels, len(vocab))
    x = None
    for l in GRID_LAMBDA[value]:  # the same warm-started path as in cross-validation
        x = fit(problem, l, x)
        if l == lam:
            break
    weights = {f: round(w, WEIGHT_DECIMALS) for f, w in zip(vocab, x[:-1])}

    rel = os.path.relpath(os.path.abspath(args.data), REPO_ROOT)
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "features": {"tokenizer": TOKENIZER, "orders": list(orders), "bos": BOS, "value": value},
        "bias": round(x[-1], WEIGHT_DECIMALS),
        "threshold": threshold,
        "training": {
            "data": rel if not rel.startswith("..") else os.path.basename(args.data),
            "data_sha256": file_sha256(args.data),
            "examples": len(labels),
            "positives": sum(labels),
            "model": "L2-regularised logistic regression (bias not penalised), L-BFGS",
            "regularization": lam,
            "min_count": min_count,
            "vocabulary": len(vocab),
            "selection": (f"{args.repeats}x stratified {args.folds}-fold CV on this data only (seeds "
                          f"{args.seed}..{args.seed + args.repeats - 1}): lowest mean out-of-fold log-loss over "
                          f"orders {[list(o) for o in GRID_ORDERS]}, min_count {GRID_MIN_COUNT}, value "
                          f"{GRID_VALUE}, lambda {GRID_LAMBDA}; threshold 0.05..0.95 by pooled out-of-fold "
                          "accuracy"),
            "cv": {k: round(v, 6) for k, v in cv.items()},
            "cv_threshold_0.5": {k: round(v, 6) for k, v in cv_at_half.items()},
        },
        "weights": weights,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(dump_router(doc))
    log(f"wrote {args.out}: orders {orders} min_count {min_count} value {value} lambda {lam} threshold "
        f"{threshold}, {len(vocab)} features; CV {json.dumps(doc['training']['cv'])}")


if __name__ == "__main__":
    main()
