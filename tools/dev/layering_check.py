#!/usr/bin/env python3
"""Checks the layering of docs/architecture.md that a compiler does not:

- the device-free libraries stay device-free in a build: no source of
  scheduler/ (tern_scheduler) is compiled with the CUDA toolkit's include
  directory or a CUDA library on its command line, so CUDA is not part of
  what tern_scheduler or its public dependencies offer their users (the
  runtime links cudart and cuBLAS privately). From the build's
  compile_commands.json; in a build without CUDA there is nothing to find.
- server/ makes backends only through runtime/backend/backend_factory.h: it
  includes no backend's own header.
- below server/ nothing reads the environment: main() parses flags into
  option structs that are passed down (CudaBackendOptions::pdl, say).

  tools/dev/layering_check.py BUILD_DIR
"""
import json
import os
import re
import shlex
import sys

DEVICE_FREE = ("scheduler/",)
CUDA_MARKERS = ("/cuda/include", "/cuda/targets/", "cuda_runtime", "-lcudart", "-lcublas", "libcudart", "libcublas")
# (folder, pattern a source there must not match, why)
SOURCE_RULES = [
    ("server", re.compile(r'#include "runtime/(cuda/cuda_backend|cpu/cpu_backend)\.h"'),
     "makes a backend itself; use runtime/backend/backend_factory.h"),
    ("kernels", re.compile(r"\bgetenv\s*\("), "reads the environment; take an option instead"),
    ("runtime", re.compile(r"\bgetenv\s*\("), "reads the environment; take an option instead"),
    ("scheduler", re.compile(r"\bgetenv\s*\("), "reads the environment; take an option instead"),
]
SOURCE_SUFFIXES = (".h", ".cc", ".cu", ".cuh")


def check_sources(root):
    failed = 0
    for folder, pattern, why in SOURCE_RULES:
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for name in sorted(files):
                if not name.endswith(SOURCE_SUFFIXES):
                    continue
                path = os.path.join(dirpath, name)
                for number, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
                    if pattern.search(line):
                        failed += 1
                        print(f"{os.path.relpath(path, root)}:{number}: {why}: {line.strip()}", file=sys.stderr)
    return failed


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    entries = json.load(open(os.path.join(build, "compile_commands.json")))
    checked, failed = 0, 0
    for entry in entries:
        source = os.path.relpath(os.path.abspath(os.path.join(entry["directory"], entry["file"])), root)
        if not source.startswith(DEVICE_FREE):
            continue
        checked += 1
        args = entry.get("arguments") or shlex.split(entry["command"])
        cuda = [a for a in args if any(marker in a for marker in CUDA_MARKERS)]
        if cuda:
            failed += 1
            print(f"{source}: compiled with CUDA on its command line: {' '.join(cuda)}", file=sys.stderr)
    if checked == 0:
        print("layering check: no scheduler/ source in compile_commands.json", file=sys.stderr)
        return 1
    misplaced = check_sources(root)
    print(f"layering check: {checked} device-free sources, {failed} with CUDA; {misplaced} lines across layers")
    return 1 if failed or misplaced else 0


if __name__ == "__main__":
    sys.exit(main())
