#!/usr/bin/env python3
"""Checks the PromQL that deploy/ ships, with promtool and against ternd's code.

  check_promql.py --root REPO [--promtool PATH] [--keep DIR]

What it checks:
  1. Every expression of the Grafana dashboard (panel targets and the
     label_values() selectors of its template variables), after substituting
     the template variables, parses: they are written into a throwaway rules
     file as `record:` entries and given to `promtool check rules`.
  2. Every prometheus-adapter metricsQuery, with the adapter's <<.Series>>,
     <<.LabelMatchers>> and <<.GroupBy>> filled in, parses the same way.
  3. Every metric name that the dashboard, the alert and recording rules and
     the adapter rules read is either a recording rule of
     deploy/prometheus/*.rules.yml or a metric that ternd exports (a "tern_..."
     string literal under server/, or a histogram's _bucket/_sum/_count
     series of one), or one of the few names listed below.
  4. Every alert in deploy/prometheus/*.rules.yml has a promtool unit test
     that expects it firing and one that expects it silent.

Exit status 0 when all pass, 1 otherwise. Needs only the standard library.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

# Metrics read by the rules that ternd does not export itself.
EXTERNAL_METRICS = {
    "up",  # Prometheus, per target
}
TEMPLATE_VALUES = {
    "namespace": ".*",
    "model": ".*",
    "tenant": ".*",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "le",
}


def exported_metrics(root):
    names = set()
    pattern = re.compile(r'"(tern_[a-z0-9_]+)"')
    for folder in ("server", "runtime", "scheduler"):
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if name.endswith((".cc", ".h")):
                    with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                        names.update(pattern.findall(f.read()))
    return names


def rules_exprs(path):
    """(kind, name, expr) for each rule of a rules file we write: `- record:` or
    `- alert:` followed by `expr:` inline or as a `|` block."""
    rules = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    current = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*- (record|alert): (\S+)", line)
        if m:
            current = (m.group(1), m.group(2))
        m = re.match(r"(\s*)expr: ?(.*)$", line)
        if m and current:
            indent, rest = len(m.group(1)), m.group(2)
            if rest.strip() in ("|", "|-", ">", ">-"):
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i].strip())
                    i += 1
                rules.append((current[0], current[1], " ".join(block)))
                current = None
                continue
            rules.append((current[0], current[1], rest.strip()))
            current = None
        i += 1
    return rules


def metric_names(expr):
    """Metric names an expression reads (not functions, keywords or labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # range and subquery durations
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        after = text[m.end():].lstrip()
        if after.startswith("("):
            continue  # a function or aggregation
        if word.lower() in PROMQL_WORDS:
            continue
        before = text[:m.start()]
        if re.search(r"[0-9.]$", before):
            continue  # the unit of a number such as 5m
        names.add(word)
    return names


def known(name, exported, recorded):
    if name in recorded or name in EXTERNAL_METRICS:
        return True
    if name in exported:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in exported:
            return True
    return False


def substitute(expr):
    def value(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in TEMPLATE_VALUES:
            raise KeyError(name)
        return TEMPLATE_VALUES[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def dashboard_exprs(path, problems):
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    exprs = []
    ids = set()

    def walk(panels):
        for p in panels:
            pid = p.get("id")
            if pid in ids:
                problems.append(f"dashboard: panel id {pid} appears twice")
            ids.add(pid)
            if p.get("type") != "row":
                if not p.get("targets"):
                    problems.append(f"dashboard: panel {pid} \"{p.get('title')}\" has no query")
                if p.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(f"dashboard: panel {pid} does not use the $datasource variable")
            for t in p.get("targets", []):
                exprs.append((f"panel {pid} \"{p.get('title')}\" {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
        if not m:
            problems.append(f"dashboard: variable {v['name']}: cannot read query {query!r}")
            continue
        exprs.append((f"variable {v['name']}", m.group(1)))
    return exprs


def adapter_queries(path):
    queries = []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for block in re.split(r"\n\s*- seriesQuery:", text)[1:]:
        series = re.match(r"\s*'([a-zA-Z_:][a-zA-Z0-9_:]*)", block).group(1)
        query = re.search(r"metricsQuery: '(.*)'", block).group(1)
        filled = (query.replace("<<.Series>>", series)
                  .replace("<<.LabelMatchers>>", 'namespace="ml",pod=~"tern-a|tern-b"')
                  .replace("<<.GroupBy>>", "namespace,pod"))
        queries.append((f"adapter rule {series}", filled))
    return queries


def alert_tests(test_paths):
    """alert name -> set of {"firing", "silent"} from promtool test files."""
    seen = {}
    for path in test_paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"\s*alertname: (\S+)", line)
            if not m:
                continue
            for follow in lines[i + 1:i + 3]:
                e = re.match(r"\s*exp_alerts:\s*(\[\])?\s*$", follow)
                if e:
                    seen.setdefault(m.group(1), set()).add("silent" if e.group(1) else "firing")
                    break
    return seen


def promtool_check(promtool, named_exprs, keep):
    """Runs promtool check rules on the expressions; returns its output and status."""
    lines = ["groups:", "  - name: deploy-promql-check", "    rules:"]
    for i, (_, expr) in enumerate(named_exprs):
        lines.append(f"      - record: deploy_check:expr_{i}")
        lines.append(f"        expr: {json.dumps(expr)}")
    with tempfile.TemporaryDirectory(prefix="tern-promql-") as scratch:
        path = os.path.join(keep or scratch, "promql_check.rules.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    output = result.stdout + result.stderr
    output = re.sub(r"deploy_check:expr_(\d+)",
                    lambda m: f"{named_exprs[int(m.group(1))][0]}: {named_exprs[int(m.group(1))][1]}", output)
    return result.returncode, output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="repository root")
    parser.add_argument("--promtool", default="promtool")
    parser.add_argument("--keep", help="write the throwaway rules file here")
    args = parser.parse_args()
    deploy = os.path.join(args.root, "deploy")
    problems = []

    rule_files = sorted(os.path.join(deploy, "prometheus", f) for f in os.listdir(os.path.join(deploy, "prometheus"))
                        if f.endswith(".rules.yml"))
    rules = [r for path in rule_files for r in rules_exprs(path)]
    recorded = {name for kind, name, _ in rules if kind == "record"}
    alerts = [name for kind, name, _ in rules if kind == "alert"]
    exported = exported_metrics(args.root)

    dash_exprs = dashboard_exprs(os.path.join(deploy, "grafana", "tern-dashboard.json"), problems)
    substituted = []
    for where, expr in dash_exprs:
        try:
            substituted.append((where, substitute(expr)))
        except KeyError as e:
            problems.append(f"dashboard: {where}: unknown template variable ${e.args[0]}")
    adapter = adapter_queries(os.path.join(deploy, "prometheus-adapter", "values.yaml"))

    status, output = promtool_check(args.promtool, substituted + adapter, args.keep)
    print(output.rstrip())
    if status != 0:
        problems.append("promtool rejected a dashboard or adapter expression (above)")
    print(f"promql: {len(substituted)} dashboard expressions, {len(adapter)} adapter queries checked by promtool")

    for where, expr in [(f"{kind} {name}", expr) for kind, name, expr in rules] + dash_exprs + adapter:
        for name in sorted(metric_names(expr)):
            if not known(name, exported, recorded):
                problems.append(f"{where}: reads {name}, which neither ternd nor a recording rule provides")
    tests_dir = os.path.join(deploy, "prometheus", "tests")
    tested = alert_tests(sorted(os.path.join(tests_dir, f) for f in os.listdir(tests_dir) if f.endswith(".yml")))
    for alert in alerts:
        missing = {"firing", "silent"} - tested.get(alert, set())
        if missing:
            problems.append(f"alert {alert}: no unit test expects it {' or '.join(sorted(missing))}")
    print(f"promql: {len(alerts)} alerts, each tested firing and silent" if not any(
        p.startswith("alert ") for p in problems) else "promql: alert test coverage incomplete")

    for p in problems:
        print("FAIL: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
