#!/usr/bin/env python3
"""Scores a SoT-R router.json on a labelled `label;request` CSV (Vicuna-80 by default) with the scoring
rule runtime/sot/trained_router.h implements, beside two baselines that need no model: the majority label
of LIMA (the training data) and always-SoT (label 1). Prints accuracy, precision, recall and F1 (of label
1) and the router's LIMA cross-validation figures recorded at training, and writes them as JSON.
Python 3 standard library only.

  python3 tools/sot/eval_router.py [--router models/sot-router/router.json] \
      [--data tests/data/sot/vicuna/router.csv] [--json models/sot-router/eval.json] \
      [--write-fixture tests/data/sot/router_scores.json]

--write-fixture also writes the reference scores of a fixed set of questions (unicode, empty, very long
among them) that tests/runtime/sot/trained_router_test.cc checks the C++ router against.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_router import (REPO_ROOT, Router, auc, classification_metrics, file_sha256, log_loss,  # noqa: E402
                          read_router_csv)

# Questions for the C++ fixture beyond the labelled ones: edge cases of the tokenizer.
FIXTURE_EXTRA = [
    "",
    " ",
    "?!...;;",
    "How",
    "HOW can I improve my TIME-management skills?",
    "how can i improve my time management skills",
    "What are the pros and cons of nuclear energy?\nList them.",
    "\tWrite a Python function that returns the n-th Fibonacci number.\r\n",
    "Solve for x: 3x + 10 = 5(x - 2).",
    "How many times does the average human blink in a lifetime? Explain step-by-step.",
    "What's the difference between a list and a tuple in Python 3.11?",
    "C++ vs. C#: which should I learn first?",
    "Quelle est la différence entre un café et un expresso ?",
    "Naïve Bayes vs. logistic regression — which is better for text?",
    "Don\u2019t you think \u201cremote work\u201d is here to stay?",
    "日本の首都はどこですか？",
    "Explain 量子 computing in simple terms 🙂",
    "Ünïcödé ÄÖÜ ß straße",
    "Pretend you are a pirate captain. How would you motivate your crew?",
    "What if the Internet had been invented during the Renaissance period?",
    "Write a haiku about autumn leaves.",
    "a" * 5000,
]


def baseline_metrics(labels, constant):
    return classification_metrics(labels, [constant] * len(labels))


def rounded(metrics):
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}


def fixture_questions(lima_rows, eval_rows):
    """FIXTURE_EXTRA, a few labelled questions of each set, and one very long question."""
    longest = max((t for _, t in lima_rows), key=len)
    long_question = "\n".join([longest] * 4)
    return FIXTURE_EXTRA + [t for _, t in eval_rows[::10]] + [t for _, t in lima_rows[::150]] + [long_question]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", default=os.path.join(REPO_ROOT, "models/sot-router/router.json"))
    ap.add_argument("--data", default=os.path.join(REPO_ROOT, "tests/data/sot/vicuna/router.csv"))
    ap.add_argument("--lima", default=os.path.join(REPO_ROOT, "tests/data/sot/lima/router.csv"),
                    help="the training data, for the majority-label baseline")
    ap.add_argument("--json", default="", help="write the figures here")
    ap.add_argument("--write-fixture", default="", help="write the C++ reference scores here")
    args = ap.parse_args()

    router = Router.load(args.router)
    with open(args.router, encoding="utf-8") as f:
        router_doc = json.load(f)
    rows = read_router_csv(args.data)
    lima_rows = read_router_csv(args.lima)
    labels = [y for y, _ in rows]
    scores = [router.score(t) for _, t in rows]
    lima_labels = [y for y, _ in lima_rows]
    majority = 1 if 2 * sum(lima_labels) > len(lima_labels) else 0

    trained = classification_metrics(labels, [1 if p >= router.threshold else 0 for p in scores])
    trained["log_loss"] = log_loss(labels, scores)
    trained["auc"] = auc(labels, scores)
    results = {
        "trained_router": rounded(trained),
        f"majority_of_lima (always {majority})": rounded(baseline_metrics(labels, majority)),
        "always_sot (always 1)": rounded(baseline_metrics(labels, 1)),
    }
    rel = lambda p: os.path.relpath(os.path.abspath(p), REPO_ROOT)  # noqa: E731
    report = {
        "router": rel(args.router),
        "router_sha256": file_sha256(args.router),
        "data": rel(args.data),
        "data_sha256": file_sha256(args.data),
        "examples": len(labels),
        "positives": sum(labels),
        "threshold": router.threshold,
        "results": results,
        "lima_cv": router_doc.get("training", {}).get("cv"),
        "scores": [round(p, 6) for p in scores],
    }

    name = os.path.basename(os.path.dirname(os.path.abspath(args.data))) or args.data
    print(f"{name}: {len(labels)} questions, {sum(labels)} labelled 1 (suits SoT); router threshold "
          f"{router.threshold}")
    print(f"{'':28} {'accuracy':>9} {'precision':>9} {'recall':>9} {'f1':>9}")
    for key, m in results.items():
        print(f"{key:28} {m['accuracy']:9.4f} {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f}")
    print(f"trained router: log-loss {trained['log_loss']:.4f}, AUC {trained['auc']:.4f}, "
          f"tp {trained['tp']} fp {trained['fp']} fn {trained['fn']} tn {trained['tn']}")
    if report["lima_cv"]:
        cv = report["lima_cv"]
        print("LIMA cross-validation (training, out-of-fold): " +
              ", ".join(f"{k} {v:.4f}" for k, v in cv.items()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.write_fixture:
        cases = [{"question": q, "score": router.score(q), "suits_sot": router.score(q) >= router.threshold}
                 for q in fixture_questions(lima_rows, rows)]
        fixture = {
            "router": rel(args.router),
            "router_sha256": file_sha256(args.router),
            "made_by": "python3 tools/sot/eval_router.py --write-fixture tests/data/sot/router_scores.json",
            "cases": cases,
        }
        with open(args.write_fixture, "w", encoding="utf-8") as f:
            json.dump(fixture, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
