#!/usr/bin/env python3
"""A real Prometheus scrapes a real ternd under load, on loopback.

  prometheus_e2e_test.py --root REPO --bin BUILD/bin [--prometheus PATH] [--promtool PATH]

ternd serves the demo LLM (CPU, with the trained SoT-R router) and the demo
DiT; Debian's Prometheus scrapes its /metrics every second as job "tern" and
evaluates deploy/prometheus/*.rules.yml every second. tern-load then sends a
few Generate streams (router-decided; Skeleton-of-Thought with a skeleton
phase and with client outlines) and `tern image` one image. The test passes when:

  - every metric name that deploy/ reads returns data from Prometheus' HTTP
    API (/api/v1/query): the names are derived from the files, not listed
    here: the alert and recording rules and the Grafana dashboard and the
    prometheus-adapter rules (parsed as tools/deploy/check_promql.py parses
    them), the recording rules' own outputs, and every tern_* name in the
    Helm chart (HPA metrics, the endpoint picker's metric specs);
  - `promtool check metrics` finds nothing to say about ternd's exposition.

Exits 77 (ctest's SKIP_RETURN_CODE) when prometheus, promtool or a binary is
missing. Takes about 15 s.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

LLM = "tern-demo-llm"
DIT = "tern-demo-dit"


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wanted_names(root):
    """Metric names deploy/ reads, each with where it is read."""
    sys.path.insert(0, os.path.join(root, "tools", "deploy"))
    import check_promql  # noqa: E402 (the same parsers check_deploy.sh uses)

    deploy = os.path.join(root, "deploy")
    where = {}

    def add(names, place):
        for name in names:
            where.setdefault(name, place)

    prom = os.path.join(deploy, "prometheus")
    rules = [r for f in sorted(os.listdir(prom)) if f.endswith(".rules.yml")
             for r in check_promql.rules_exprs(os.path.join(prom, f))]
    for kind, name, expr in rules:
        add(check_promql.metric_names(expr), f"{kind} {name}")
        if kind == "record":
            add([name], "recording rules")
    problems = []
    for place, expr in check_promql.dashboard_exprs(os.path.join(deploy, "grafana", "tern-dashboard.json"), problems):
        add(check_promql.metric_names(expr), f"dashboard {place}")
    for place, expr in check_promql.adapter_queries(os.path.join(deploy, "prometheus-adapter", "values.yaml")):
        add(check_promql.metric_names(expr), place)
    chart = os.path.join(deploy, "helm", "tern")
    for dirpath, _, files in os.walk(chart):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, encoding="utf-8") as text:
                add(re.findall(r"\btern_[a-z0-9_]+\b", text.read()), f"helm {os.path.relpath(path, chart)}")
    if problems:
        sys.exit("cannot read the dashboard: " + "; ".join(problems))
    return where


class Processes:
    def __init__(self):
        self.procs = []

    def start(self, argv, log):
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def query(prom_url, expr):
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(http_get(url))
    if body.get("status") != "success":
        raise RuntimeError(f"query {expr}: {body}")
    return body["data"]["result"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--bin", required=True, help="the build's bin/ (ternd, tern, tern-load)")
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    parser.add_argument("--promtool", default=shutil.which("promtool") or "/usr/bin/promtool")
    parser.add_argument("--keep", help="leave the logs and Prometheus data here")
    args = parser.parse_args()
    started = time.monotonic()

    for tool in (args.prometheus, args.promtool):
        if not os.access(tool, os.X_OK):
            skip(f"{tool} not found (Debian package prometheus)")
    binaries = {name: os.path.join(args.bin, name) for name in ("ternd", "tern", "tern-load")}
    for path in binaries.values():
        if not os.access(path, os.X_OK):
            skip(f"{path} is not built")

    names = wanted_names(args.root)
    print(f"{len(names)} metric names read by deploy/")
    work = args.keep or tempfile.mkdtemp(prefix="tern-prom-e2e-")
    os.makedirs(work, exist_ok=True)
    procs = Processes()
    try:
        return run(args, binaries, names, work, procs, started)
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, binaries, names, work, procs, started):
    models = os.path.join(args.root, "models")
    ports_file = os.path.join(work, "ports.json")
    ternd_log = open(os.path.join(work, "ternd.log"), "w")
    procs.start([binaries["ternd"], "--model", os.path.join(models, LLM), "--model", os.path.join(models, DIT),
                 "--backend", "cpu", "--sot-router-file", os.path.join(models, "sot-router", "router.json"),
                 "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--ports-file", ports_file],
                ternd_log)
    deadline = time.monotonic() + 60
    while not os.path.exists(ports_file):
        if time.monotonic() > deadline or procs.procs[0].poll() is not None:
            print(open(ternd_log.name).read()[-3000:])
            sys.exit("FAIL: ternd did not start")
        time.sleep(0.1)
    time.sleep(0.05)
    ports = json.load(open(ports_file))
    grpc_target = f"127.0.0.1:{ports['grpc_port']}"
    metrics_target = f"127.0.0.1:{ports['http_port']}"

    prom_port = free_port()
    rule_dir = os.path.join(args.root, "deploy", "prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [os.path.join(rule_dir, f) for f in sorted(os.listdir(rule_dir)) if f.endswith(".rules.yml")],
        "scrape_configs": [{"job_name": "tern", "static_configs": [{"targets": [metrics_target]}]}],
    }
    config_path = os.path.join(work, "prometheus.yml")
    with open(config_path, "w") as f:
        json.dump(config, f)  # JSON is YAML
    prom_log = open(os.path.join(work, "prometheus.log"), "w")
    prom = procs.start([args.prometheus, f"--config.file={config_path}",
                        f"--storage.tsdb.path={os.path.join(work, 'data')}",
                        f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], prom_log)
    prom_url = f"http://127.0.0.1:{prom_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if http_get(f"{prom_url}/-/ready", timeout=1).strip():
                break
        except OSError:
            pass
        if time.monotonic() > deadline or prom.poll() is not None:
            print(open(prom_log.name).read()[-3000:])
            sys.exit("FAIL: prometheus did not become ready")
        time.sleep(0.2)

    # The load: Generate streams the router decides, Skeleton-of-Thought ones (a skeleton phase;
    # client outlines, whose points always expand), and one image. Each run its own seed, so
    # that their request ids differ.
    prompts = os.path.join(args.root, "loadtest", "prompts", "vicuna80.csv")
    common = ["--target", grpc_target, "--model", LLM, "--prompts", prompts, "--requests", "2",
              "--concurrency", "2", "--max-tokens", "6"]
    load_log = open(os.path.join(work, "load.log"), "w")
    loads = [procs.start([binaries["tern-load"], *common, "--seed", str(seed), *mode], load_log)
             for seed, mode in ((1, ["--decoding-mode", "auto"]),
                                (2, ["--decoding-mode", "sot"]),
                                (3, ["--decoding-mode", "sot", "--sot-outline-points", "2",
                                     "--sot-point-tokens", "2"]))]
    image = subprocess.run([binaries["tern"], "--target", grpc_target, "image", "-m", DIT, "--class", "Sneaker",
                            "--steps", "4", "-o", os.path.join(work, "sneaker.png")],
                           capture_output=True, text=True, timeout=60)
    if image.returncode != 0:
        sys.exit(f"FAIL: tern image: {image.stdout}{image.stderr}")
    for load in loads:
        if load.wait(timeout=60) != 0:
            print(open(load_log.name).read()[-3000:])
            sys.exit("FAIL: tern-load failed")

    exposition = http_get(f"http://{metrics_target}/metrics")
    check = subprocess.run([args.promtool, "check", "metrics"], input=exposition, capture_output=True, text=True)
    lint = (check.stdout + check.stderr).strip()
    failures = []
    if check.returncode != 0 or lint:
        failures.append(f"promtool check metrics on ternd's exposition:\n{lint}")
    else:
        print(f"promtool check metrics: clean ({exposition.count(chr(10))} lines)")

    # Every name must return data; recording rules need two scrapes after the load.
    missing = dict(names)
    deadline = time.monotonic() + 10
    while missing and time.monotonic() < deadline:
        for name in list(missing):
            if query(prom_url, name):
                del missing[name]
        if missing:
            time.sleep(0.5)
    for name, place in sorted(missing.items()):
        failures.append(f"{name} (read by {place}) returns no data")
    print(f"{len(names) - len(missing)} of {len(names)} names returned data")

    if failures:
        for f in failures:
            print("FAIL: " + f)
        return 1
    print(f"PASS in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
