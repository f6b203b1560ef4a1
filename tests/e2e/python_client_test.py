#!/usr/bin/python3
"""A second, independent client: Python grpcio with stubs generated from proto/.

Starts the real ternd on loopback ports, calls grpc.health.v1.Health/Check and
tern.v1.Models/ListModels over the wire, then stops it with SIGTERM and checks
it exits 0. Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ternd", required=True)
    parser.add_argument("--stubs", required=True, help="directory of generated *_pb2.py")
    args = parser.parse_args()

    sys.path.insert(0, args.stubs)
    import grpc  # noqa: E402

    # The generated health stubs live in the grpc.health.v1 package, which the
    # grpcio distribution does not ship; graft the generated folder onto it.
    grpc.__path__.append(os.path.join(args.stubs, "grpc"))
    from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
    from tern.v1 import models_pb2, models_pb2_grpc  # noqa: E402

    with tempfile.TemporaryDirectory() as tmp:
        ports_file = os.path.join(tmp, "ports.json")
        log = open(os.path.join(tmp, "ternd.log"), "w+")
        proc = subprocess.Popen(
            [args.ternd, "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0",
             "--ports-file", ports_file],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while not os.path.exists(ports_file):
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    print("ternd did not start:", log.read(), file=sys.stderr)
                    return 1
                time.sleep(0.02)
            with open(ports_file) as f:
                grpc_port = json.load(f)["grpc_port"]

            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply
                reply = health.Check(health_pb2.HealthCheckRequest(service="tern.v1.Models"), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply

                models = models_pb2_grpc.ModelsStub(channel)
                listed = models.ListModels(models_pb2.ListModelsRequest(), timeout=10)
                assert len(listed.models) == 0, listed

                try:
                    models.GetModelInfo(models_pb2.GetModelInfoRequest(name="absent"), timeout=10)
                    raise AssertionError("GetModelInfo of an absent model succeeded")
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND, error

            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            assert code == 0, f"ternd exited {code}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print("python grpcio client: Health SERVING, ListModels ok, GetModelInfo NOT_FOUND, SIGTERM exit 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
