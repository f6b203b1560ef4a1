#!/usr/bin/env python3
"""Soak benchmark: ternd under mixed traffic for a long time, memory and latency watched.

Starts ternd (from --build) serving the demo LLM (models/tern-demo-llm) and the demo DiT
(models/tern-demo-dit) with two tenants, then for --duration seconds runs, side by side:

  streams    tern-load, gRPC Generate streams in windows of --window seconds: both tenants'
             keys (--tenant-mix), a share sent as Skeleton-of-Thought, output lengths drawn
             per request; each window's report gives that window's latency percentiles
  deadlines  tern-load with a 0.4 s deadline on long requests (DEADLINE_EXCEEDED)
  openai     streamed and whole chat completions over HTTP, and clients that read a few
             events and walk away mid-stream (a cancel)
  bad        malformed or out-of-range requests over HTTP and the CLI's gRPC (each must get
             its own status: 400/401/404/405/409/413/431 or INVALID_ARGUMENT, NOT_FOUND, ...)
  quota      the "metered" tenant over its token quota (429 / RESOURCE_EXHAUSTED)
  images     `tern image` on the demo DiT, some with a deadline that cuts them short

and samples ternd's resident memory (VmRSS), GPU memory (nvidia-smi, when present) and its
/metrics every --sample seconds. At the end it waits for the engine to go idle and reports:
the memory slope (least squares over the samples after the first tenth of the run), latency
drift (the first stream window's p50/p99 against the last's), the KV cache back at 0 blocks,
requests running and waiting at 0, error counts by code, wrong answers to bad inputs, and
whether SIGTERM drained ternd to exit status 0 within its grace period. Prints a table and
writes everything as JSON (--json). Exit status 0 when every check passed.

  tools/soak/soak.py --build build --duration 1200 --json soak.json
  tools/soak/soak.py --build build --duration 600 --backend cuda --json soak-gpu.json

Standard library only; needs tern-load, tern and ternd in BUILD/bin.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = {"alpha": "soak-alpha-key-01", "beta": "soak-beta-key-02", "metered": "soak-metered-key-03"}
LLM = "tern-demo-llm"
DIT = "tern-demo-dit"


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def gpu_mib(pid):
    """GPU memory ternd holds, in MiB, or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    total = 0
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            total += int(parts[1])
    return total


def http_request(port, method, path, body=None, headers=None, timeout=60):
    """(status, body text); status 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()


def metric(scrape, series):
    for line in scrape.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def slope_per_hour(points):
    """Least-squares slope of (seconds, value) points, per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return 0.0
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx * 3600.0


class Counts:
    """Outcomes by code, from every worker."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_source = {}

    def add(self, source, code, n=1):
        with self.lock:
            bucket = self.by_source.setdefault(source, {})
            bucket[code] = bucket.get(code, 0) + n

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.by_source))


# Bad inputs over HTTP: (name, method, path, body, extra headers, expected status).
def bad_http_requests():
    chat = lambda **extra: json.dumps({"model": LLM, "max_tokens": 4,
                                       "messages": [{"role": "user", "content": "Hi"}], **extra})
    return [
        ("malformed JSON", "POST", "/v1/chat/completions", '{"model": ', {}, 400),
        ("unknown model", "POST", "/v1/chat/completions", json.dumps(
            {"model": "nope", "messages": [{"role": "user", "content": "Hi"}]}), {}, 404),
        ("temperature out of range", "POST", "/v1/chat/completions", chat(temperature=101), {}, 400),
        ("n out of range", "POST", "/v1/chat/completions", chat(n=10000), {}, 400),
        ("negative max_tokens", "POST", "/v1/chat/completions", chat(max_tokens=-1), {}, 400),
        ("unsupported field", "POST", "/v1/chat/completions", chat(tools=[]), {}, 400),
        ("empty messages", "POST", "/v1/chat/completions", json.dumps({"model": LLM, "messages": []}), {}, 400),
        ("wrong method", "GET", "/v1/chat/completions", None, {}, 405),
        ("unknown route", "POST", "/v1/embeddings", "{}", {}, 404),
        ("missing key", "POST", "/v1/chat/completions", chat(), {"Authorization": ""}, 401),
        ("unknown key", "POST", "/v1/chat/completions", chat(), {"Authorization": "Bearer wrong-key-0000"}, 401),
        ("header too large", "GET", "/v1/models", None, {"X-Padding": "p" * 20000}, 431),
        ("too many stop strings", "POST", "/v1/chat/completions", chat(stop=["x%d" % i for i in range(64)]), {}, 400),
    ]


def start_ternd(bin_dir, config, work_dir, nice=0):
    """Starts BIN_DIR/ternd on CONFIG (a dict, written to WORK_DIR/config.json) on free loopback
    ports; returns (process, "127.0.0.1:<grpc port>", http port, log file) once it listens.
    Exits the script when ternd dies or takes over 300 s to start."""
    config_path = os.path.join(work_dir, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    ports_file = os.path.join(work_dir, "ports.json")
    log = open(os.path.join(work_dir, "ternd.log"), "w")
    cmd = [os.path.join(bin_dir, "ternd"), "--config", config_path, "--grpc-port", "0", "--http-port", "0",
           "--host", "127.0.0.1", "--ports-file", ports_file]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    daemon = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"ternd exited with {daemon.returncode} at start; see {log.name}")
        if os.path.exists(ports_file) and os.path.getsize(ports_file) > 0:
            try:
                with open(ports_file) as f:
                    ports = json.load(f)
                grpc = f"127.0.0.1:{ports['grpc_port'] if 'grpc_port' in ports else ports['grpc']}"
                http = int(ports["http_port"] if "http_port" in ports else ports["http"])
                return daemon, grpc, http, log
            except (ValueError, KeyError):
                pass
        time.sleep(0.2)
    sys.exit("ternd did not start within 300 s")


class Soak:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.join(os.path.abspath(args.build), "bin")
        self.dir = tempfile.mkdtemp(prefix="tern-soak-")
        self.counts = Counts()
        self.stop = threading.Event()
        self.samples = []  # (t, rss_kib, gpu_mib, kv_ratio, running, waiting)
        self.windows = []  # per stream window: its tern-load summary
        self.bad_wrong = []
        self.bad_tried = 0
        self.daemon = None
        self.start = None

    # ternd ----------------------------------------------------------------
    def start_ternd(self):
        config = {
            "models": [
                dict({"name": LLM, "path": os.path.join(ROOT, "models", LLM), "backend": self.args.backend,
                      "maxNumSeqs": 16},
                     **({"cpuKvCacheMib": self.args.cpu_kv_cache_mib} if self.args.backend == "cpu" else {})),
            ] + ([] if self.args.no_images else [{"name": DIT, "path": os.path.join(ROOT, "models", DIT)}]),
            "sotRouterFile": os.path.join(ROOT, "models", "sot-router", "router.json"),
            "tenants": [
                {"name": "alpha", "apiKeys": [KEYS["alpha"]], "weight": 2},
                {"name": "beta", "apiKeys": [KEYS["beta"]]},
                {"name": "metered", "apiKeys": [KEYS["metered"]], "maxTokensPerMinute": 400},
            ],
            "limits": {"maxQueuedRequests": 64},
            "drainTimeoutSeconds": 20,
        }
        self.daemon, self.grpc, self.http, self.log = start_ternd(self.bin, config, self.dir, self.args.ternd_nice)

    def scrape(self):
        status, body = http_request(self.http, "GET", "/metrics", timeout=20)
        return body if status == 200 else ""

    # workers --------------------------------------------------------------
    def sampler(self):
        raw = open(os.path.join(self.dir, "samples.jsonl"), "w")
        while not self.stop.is_set():
            scrape = self.scrape()
            series = lambda name: metric(scrape, f'{name}{{model="{LLM}"}}')
            self.samples.append((time.time() - self.start, rss_kib(self.daemon.pid), gpu_mib(self.daemon.pid),
                                 series("tern_kv_cache_usage_ratio"), series("tern_num_requests_running"),
                                 series("tern_num_requests_waiting")))
            raw.write(json.dumps(self.samples[-1]) + "\n")
            raw.flush()
            self.stop.wait(self.args.sample)

    def tern_load(self, name, extra, seconds, index):
        out = os.path.join(self.dir, f"{name}-{index}.json")
        cmd = [os.path.join(self.bin, "tern-load"), "--target", self.grpc, "--model", LLM,
               "--prompts", os.path.join(ROOT, "loadtest", "prompts", "vicuna80.csv"),
               "--duration", str(seconds), "--seed", str(index), "--json", out,
               "--max-time", str(seconds + 120)] + extra
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 200)
        try:
            with open(out) as f:
                report = json.load(f)
        except (OSError, ValueError):
            self.counts.add(name, "NO_REPORT")
            return None
        self.counts.add(name, "OK", report["summary"]["completed"])
        for code, entry in report.get("errors", {}).items():
            self.counts.add(name, code, entry["count"])
        return report

    def streams(self):
        tenant_mix = f"{KEYS['alpha']}:2,{KEYS['beta']}:1"
        i = 0
        while not self.stop.is_set():
            seconds = min(self.args.window, max(1.0, self.end - time.time()))
            if seconds < 5:
                break
            report = self.tern_load("streams", ["--rate", str(self.args.rate), "--tenant-mix", tenant_mix,
                                                "--sot-share", "0.2", "--max-tokens-dist", "uniform:8:64",
                                                "--max-in-flight", "16", "--timeout", "60"], seconds, i)
            if report is not None:
                lat = report["latency_ms"]
                self.windows.append({"window": i, "t_end": time.time() - self.start,
                                     "sent": report["summary"]["sent"], "ok": report["summary"]["completed"],
                                     "ttft_p50": lat["ttft"]["p50"], "ttft_p99": lat["ttft"]["p99"],
                                     "e2e_p50": lat["e2e"]["p50"], "e2e_p99": lat["e2e"]["p99"],
                                     "tpot_p50": lat["tpot"]["p50"]})
            i += 1

    def deadlines(self):
        i = 0
        while not self.stop.is_set():
            seconds = min(self.args.window, max(1.0, self.end - time.time()))
            if seconds < 5:
                break
            self.tern_load("deadlines", ["--rate", str(self.args.rate / 4), "--api-key", KEYS["beta"],
                                         "--max-tokens", "400", "--ignore-eos", "--timeout", "0.4",
                                         "--max-in-flight", "4"], seconds, 1000 + i)
            i += 1

    def quota(self):
        # 400 tokens a minute: a few requests of 64 + prompt pass, the rest are refused at once.
        i = 0
        while not self.stop.is_set():
            status, _ = http_request(self.http, "POST", "/v1/completions", json.dumps(
                {"model": LLM, "prompt": "The sea", "max_tokens": 64}),
                {"Authorization": "Bearer " + KEYS["metered"], "Content-Type": "application/json"})
            self.counts.add("quota", str(status))
            i += 1
            self.stop.wait(2.0)

    def openai(self):
        rng = random.Random(7)
        headers = {"Authorization": "Bearer " + KEYS["alpha"], "Content-Type": "application/json"}
        while not self.stop.is_set():
            kind = rng.choice(["whole", "stream", "cancel", "cancel"])
            body = {"model": LLM, "max_tokens": rng.randint(8, 96), "temperature": 0,
                    "messages": [{"role": "user", "content": rng.choice(["Tell me about tea.", "Why is the sky blue?",
                                                                         "Write a poem about the sea."])}]}
            if kind == "whole":
                status, _ = http_request(self.http, "POST", "/v1/chat/completions", json.dumps(body), headers)
                self.counts.add("openai", str(status))
            else:
                body["stream"] = True
                if kind == "cancel":
                    body["max_tokens"] = 1000
                    body["ignore_eos"] = True
                self.counts.add("openai", self.stream_chat(body, headers, walk_away=(kind == "cancel")))
            self.stop.wait(rng.uniform(1.0, 4.0))

    def stream_chat(self, body, headers, walk_away):
        """Streams a chat completion; a walk-away closes the socket after 3 events."""
        payload = json.dumps(body).encode()
        try:
            sock = socket.create_connection(("127.0.0.1", self.http), timeout=60)
        except OSError:
            return "connect_failed"
        try:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(payload)}\r\n"
                         f"\r\n".encode() + payload)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                status = re.match(rb"HTTP/1.1 (\d+)", data)
                if status and status.group(1) != b"200" and b"\r\n\r\n" in data:
                    return status.group(1).decode()  # an error answer: whole, no stream follows
                if walk_away and data.count(b"data: {") >= 3:
                    return "walked_away"
                if b"data: [DONE]" in data:
                    break
            status = re.match(rb"HTTP/1.1 (\d+)", data)
            return status.group(1).decode() if status else "no_status"
        except OSError:
            return "socket_error"
        finally:
            sock.close()

    def bad(self):
        requests = bad_http_requests()
        tern = os.path.join(self.bin, "tern")
        grpc_bad = [] if self.args.no_images else [
            ("bad class", ["image", "-m", DIT, "--class-label", "999", "-o", os.path.join(self.dir, "bad.png")],
             "INVALID_ARGUMENT"),
            ("unknown class name", ["image", "-m", DIT, "--class", "NoSuchClass", "-o",
                                    os.path.join(self.dir, "bad.png")], "INVALID_ARGUMENT"),
        ]
        grpc_bad += [
            ("empty prompt", ["generate", "-m", LLM, ""], "INVALID_ARGUMENT"),
            ("unknown model", ["generate", "-m", "nope", "Hi"], "NOT_FOUND"),
        ]
        i = 0
        while not self.stop.is_set():
            name, method, path, body, extra, expected = requests[i % len(requests)]
            headers = {"Authorization": "Bearer " + KEYS["beta"], "Content-Type": "application/json"}
            for k, v in extra.items():
                if v:
                    headers[k] = v
                else:
                    headers.pop(k, None)
            status, text = http_request(self.http, method, path, body, headers)
            self.bad_tried += 1
            self.counts.add("bad", str(status))
            if status != expected:
                self.bad_wrong.append({"input": name, "expected": expected, "got": status, "body": text[:200]})
            if i % 4 == 0:
                gname, argv, gexpected = grpc_bad[(i // 4) % len(grpc_bad)]
                run = subprocess.run([tern, "--target", self.grpc, "--api-key", KEYS["beta"], "--timeout", "30"] + argv,
                                     capture_output=True, text=True, timeout=60)
                self.bad_tried += 1
                code = run.stderr.split(":")[1].strip() if run.stderr.startswith("tern:") and ":" in run.stderr[5:] \
                    else f"exit {run.returncode}"
                self.counts.add("bad", code)
                if code != gexpected:
                    self.bad_wrong.append({"input": gname, "expected": gexpected, "got": code,
                                           "body": run.stderr[:200]})
            i += 1
            self.stop.wait(1.0)

    def images(self):
        tern = os.path.join(self.bin, "tern")
        i = 0
        while not self.stop.is_set():
            short = i % 5 == 4  # a deadline that ends it mid-way
            run = subprocess.run([tern, "--target", self.grpc, "--api-key", KEYS["alpha" if i % 2 else "beta"],
                                  "--timeout", "0.3" if short else "120", "image", "-m", DIT,
                                  "--class-label", str(i % 10), "--steps", "50" if short else "8", "--seed", str(i),
                                  "-o", os.path.join(self.dir, "image.png")],
                                 capture_output=True, text=True, timeout=300)
            if run.returncode == 0:
                self.counts.add("images", "OK")
            else:
                m = re.match(r"tern: ([A-Z_]+)", run.stderr)
                self.counts.add("images", m.group(1) if m else f"exit {run.returncode}")
            i += 1
            self.stop.wait(2.0)

    # run ------------------------------------------------------------------
    def run(self):
        self.start_ternd()
        self.start = time.time()
        self.end = self.start + self.args.duration
        kinds = [self.sampler, self.streams, self.deadlines, self.quota, self.openai, self.bad]
        if not self.args.no_images:
            kinds.append(self.images)
        workers = [threading.Thread(target=w, daemon=True) for w in kinds]
        for w in workers:
            w.start()
        while time.time() < self.end:
            if self.daemon.poll() is not None:
                break
            time.sleep(1)
            if sys.stderr.isatty():
                print(f"\rsoak: {time.time() - self.start:7.0f} / {self.args.duration} s", end="", file=sys.stderr)
        self.stop.set()
        for w in workers[1:]:
            w.join(timeout=300)
        alive = self.daemon.poll() is None
        # Idle again: nothing running or waiting, every KV block free.
        idle = None
        idle_deadline = time.time() + 60
        while alive and time.time() < idle_deadline:
            scrape = self.scrape()
            values = [metric(scrape, f'{m}{{model="{LLM}"}}') for m in
                      ("tern_kv_cache_usage_ratio", "tern_num_requests_running", "tern_num_requests_waiting")]
            idle = values
            if values == [0.0, 0.0, 0.0]:
                break
            time.sleep(1)
        workers[0].join(timeout=30)
        final_rss = rss_kib(self.daemon.pid) if alive else -1
        # Drain: SIGTERM, exit 0 within the grace period.
        drain_started = time.time()
        exit_code = None
        if alive:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                exit_code = self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                exit_code = "killed"
        drain_seconds = time.time() - drain_started
        self.log.flush()
        return self.report(alive, idle, final_rss, exit_code, drain_seconds)

    def report(self, alive, idle, final_rss, exit_code, drain_seconds):
        skip = self.args.duration * 0.1
        steady = [(t, rss) for (t, rss, *_rest) in self.samples if t >= skip and rss > 0]
        rss_slope_mib_h = slope_per_hour([(t, rss / 1024.0) for t, rss in steady])
        gpu = [(t, g) for (t, _rss, g, *_rest) in self.samples if t >= skip and g is not None]
        gpu_slope = slope_per_hour(gpu) if gpu else None
        # A window whose requests all failed has no latencies: compare the first and last that do.
        timed = [w for w in self.windows if w["ok"] > 0 and w["e2e_p50"] is not None]
        first, last = (timed[0], timed[-1]) if timed else (None, None)
        drift = {}
        if first and last and first is not last:
            for key in ("ttft_p50", "ttft_p99", "e2e_p50", "e2e_p99", "tpot_p50"):
                if first[key] is None or last[key] is None:
                    continue
                drift[key] = {"first_ms": first[key], "last_ms": last[key],
                              "ratio": (last[key] / first[key]) if first[key] else None}
        counts = self.counts.snapshot()
        checks = {
            "ternd alive to the end": alive,
            "KV blocks back to 0, nothing running or waiting": idle == [0.0, 0.0, 0.0],
            "every bad input got its status": not self.bad_wrong,
            "SIGTERM: exit 0": exit_code == 0,
            "no INTERNAL or UNKNOWN": not any(code in ("INTERNAL", "UNKNOWN", "500")
                                              for source in counts.values() for code in source),
        }
        result = {
            "duration_s": self.args.duration,
            "backend": self.args.backend,
            "samples": len(self.samples),
            "rss_mib": {"first": steady[0][1] / 1024.0 if steady else None,
                        "max": max(r for _, r in steady) / 1024.0 if steady else None,
                        "final": final_rss / 1024.0 if final_rss > 0 else None,
                        "slope_mib_per_hour": rss_slope_mib_h},
            "gpu_mib": {"slope_mib_per_hour": gpu_slope,
                        "first": gpu[0][1] if gpu else None, "last": gpu[-1][1] if gpu else None},
            "latency_drift": drift,
            "stream_windows": self.windows,
            "idle_at_end": {"kv_cache_usage_ratio": idle[0] if idle else None,
                            "running": idle[1] if idle else None, "waiting": idle[2] if idle else None},
            "outcomes_by_source": counts,
            "bad_inputs_tried": self.bad_tried,
            "bad_inputs_wrong": self.bad_wrong,
            "drain": {"exit_code": exit_code, "seconds": drain_seconds},
            "checks": checks,
            "rss_samples": [(round(t, 1), rss) for (t, rss, *_rest) in self.samples],
        }
        print(f"\nsoak: {self.args.duration} s on backend {self.args.backend}, {len(self.samples)} samples, "
              f"logs in {self.dir}")
        print(f"  RSS: {result['rss_mib']['first']:.1f} MiB after warm-up, max {result['rss_mib']['max']:.1f}, "
              f"slope {rss_slope_mib_h:+.2f} MiB/h" if steady else "  RSS: no samples")
        if gpu_slope is not None:
            print(f"  GPU memory: {gpu[0][1]} -> {gpu[-1][1]} MiB, slope {gpu_slope:+.2f} MiB/h")
        for key, d in drift.items():
            ratio = f"{d['ratio']:.2f}x" if d["ratio"] else "-"
            print(f"  {key:9s} first window {d['first_ms']:9.1f} ms, last {d['last_ms']:9.1f} ms ({ratio})")
        print(f"  idle at the end: KV usage {result['idle_at_end']['kv_cache_usage_ratio']}, running "
              f"{result['idle_at_end']['running']}, waiting {result['idle_at_end']['waiting']}")
        for source, by_code in sorted(counts.items()):
            print(f"  {source:10s} " + ", ".join(f"{code} {n}" for code, n in sorted(by_code.items())))
        print(f"  bad inputs: {self.bad_tried} tried, {len(self.bad_wrong)} answered wrong")
        print(f"  drain: exit {exit_code} after {drain_seconds:.1f} s")
        for name, ok in checks.items():
            print(f"  [{'ok' if ok else 'FAIL'}] {name}")
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(result, f, indent=1)
        return 0 if all(checks.values()) else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build", help="build directory with bin/ternd, bin/tern, bin/tern-load")
    parser.add_argument("--duration", type=float, default=3600, help="seconds of traffic (default 3600)")
    parser.add_argument("--window", type=float, default=120, help="seconds per tern-load window (default 120)")
    parser.add_argument("--rate", type=float, default=1.0, help="stream arrivals per second (default 1)")
    parser.add_argument("--sample", type=float, default=5, help="seconds between samples (default 5)")
    parser.add_argument("--backend", default="cpu", help="the LLM's backend: cpu, cuda or auto (default cpu)")
    parser.add_argument("--ternd-nice", type=int, default=0, help="run ternd under nice -n N")
    parser.add_argument("--no-images", action="store_true", help="serve and drive the LLM only")
    # The CPU backend's KV pool becomes resident page by page as blocks are first written, and the
    # prefix cache keeps blocks until the pool runs out: a small pool is all resident within
    # minutes, so the slope measured after it is the daemon's own.
    parser.add_argument("--cpu-kv-cache-mib", type=int, default=64,
                        help="the CPU backend's KV cache (default 64 MiB; ternd's own default is 1024)")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args()
    sys.exit(Soak(args).run())


if __name__ == "__main__":
    main()
