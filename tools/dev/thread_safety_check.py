#!/usr/bin/env python3
"""Clang's thread-safety analysis over every library and tool source that uses
the Abseil lock annotations (ABSL_GUARDED_BY and friends), with the flags the build
used (compile_commands.json), as -fsyntax-only. Fails on any warning.

  tools/dev/thread_safety_check.py BUILD_DIR
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

ANNOTATION = re.compile(r"ABSL_(GUARDED_BY|EXCLUSIVE_LOCKS_REQUIRED|LOCKS_EXCLUDED|PT_GUARDED_BY)")
INCLUDE = re.compile(r'#include "([^"]+)"')
# GCC-only options clang rejects.
DROP = {"-fno-fat-lto-objects"}


def uses_annotations(path, root, seen):
    if path in seen or not os.path.exists(path):
        return False
    seen.add(path)
    text = open(path, encoding="utf-8", errors="replace").read()
    if ANNOTATION.search(text):
        return True
    return any(uses_annotations(os.path.join(root, inc), root, seen) for inc in INCLUDE.findall(text))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    clang = shutil.which("clang++")
    if clang is None:
        print("thread-safety check: clang++ is not installed (Debian package clang)", file=sys.stderr)
        return 1
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    entries = json.load(open(os.path.join(build, "compile_commands.json")))
    checked, failed = 0, 0
    for entry in entries:
        source = entry["file"]
        relative = source[len(root):]
        if not source.endswith(".cc") or not source.startswith(root) or "/build" in relative:
            continue
        # The lock discipline lives in the libraries and tools; tests and
        # benchmarks only call them, and parsing them would double the cost.
        if relative.startswith(("/tests/", "/bench/")):
            continue
        if not uses_annotations(source, root, set()):
            continue
        args = shlex.split(entry["command"])
        flags = [a for a in args[1:] if a not in DROP]
        # Drop output and the source: keep the flags only.
        cleaned, skip = [], False
        for a in flags:
            if skip:
                skip = False
                continue
            if a in ("-o", "-c", "-MF", "-MT", "-MQ"):
                skip = a != "-c"
                continue
            if a in ("-MD", "-MMD") or a == source or a.endswith(os.path.basename(source)):
                continue
            cleaned.append(a)
        cmd = [clang, *cleaned, "-fsyntax-only", "-Wno-unknown-warning-option", "-Wthread-safety",
               "-Werror=thread-safety", source]
        result = subprocess.run(cmd, cwd=entry["directory"], capture_output=True, text=True)
        checked += 1
        if result.returncode != 0:
            failed += 1
            print(f"FAIL {os.path.relpath(source, root)}\n{result.stderr}")
        else:
            print(f"ok   {os.path.relpath(source, root)}")
    print(f"thread-safety analysis: {checked} files, {failed} failed")
    return 1 if failed or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
