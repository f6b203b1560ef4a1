#!/usr/bin/env python3
"""Measures the two ceilings every roofline in bench/RESULTS.md divides by:
device memory bandwidth (a large device-to-device copy, bytes read + written)
and the dense bf16 matrix-product rate (8192^3 through cuBLAS). Run on the
GPU machine with its PyTorch: python3 tools/device/ceilings.py"""
import time

import torch


def timed(fn, iters=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def main():
    print("card:", torch.cuda.get_device_name())
    x = torch.empty(1024**3, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    dt = timed(lambda: y.copy_(x))
    print(f"d2d copy: {2 * x.numel() * 2 / dt / 1e12:.2f} TB/s (read + write)")
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn_like(a)
    dt = timed(lambda: a @ b)
    print(f"bf16 GEMM 8192^3: {2 * 8192**3 / dt / 1e12:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
