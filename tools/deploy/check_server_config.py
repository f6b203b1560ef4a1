#!/usr/bin/env python3
"""Parses ternd config files as tern.v1.ServerConfig, as ternd does.

  check_server_config.py --root REPO [--protoc PATH] FILE...

proto/tern/v1/config.proto is compiled with protoc into a descriptor set and
each FILE is parsed with protobuf's JSON mapping, unknown fields rejected
(ternd's loader rejects them too). Exit status 0 when all parse, 1 when one
does not, 77 when protoc or Python's protobuf package is missing.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--protoc", default="protoc")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
    except ImportError:
        print("server config: SKIP (Python has no protobuf package)")
        return 77
    if shutil.which(args.protoc) is None:
        print("server config: SKIP (no protoc)")
        return 77

    with tempfile.TemporaryDirectory(prefix="tern-config-") as scratch:
        descriptor_path = os.path.join(scratch, "config.desc")
        subprocess.run([args.protoc, "-I", os.path.join(args.root, "proto"), "--include_imports",
                        f"--descriptor_set_out={descriptor_path}", "tern/v1/config.proto"], check=True)
        with open(descriptor_path, "rb") as f:
            files = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("tern.v1.ServerConfig")
    if hasattr(message_factory, "GetMessageClass"):
        server_config = message_factory.GetMessageClass(descriptor)
    else:
        server_config = message_factory.MessageFactory(pool).GetPrototype(descriptor)

    failed = 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            config = json_format.Parse(text, server_config())
        except json_format.ParseError as e:
            print(f"FAIL: {os.path.basename(path)}: {e}")
            failed += 1
            continue
        models = ", ".join(f"{m.name}={m.path}" for m in config.models)
        print(f"server config: {os.path.basename(path)}: ok ({len(config.models)} models: {models}; "
              f"{len(config.tenants)} tenants; drain {config.drain_timeout_seconds:g}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
