"""Loads tern-demo-dit and fmnist-classifier from their model folders (config.json +
model.safetensors) into PyTorch modules, weights upcast to `dtype`."""
import json
import os

import torch

import st_io
from classifier import FmnistClassifier
from dit_model import DiT


def load_dit(model_dir, device="cpu", dtype=torch.float32):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors, _ = st_io.load(os.path.join(model_dir, "model.safetensors"))
    model = DiT(cfg)
    sd = {k: torch.from_numpy(v.astype("float32")) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{model_dir}: missing {missing}, unexpected {unexpected}")
    return model.to(device=device, dtype=dtype).eval(), cfg


def load_classifier(model_dir, device="cpu"):
    tensors, _ = st_io.load(os.path.join(model_dir, "model.safetensors"))
    model = FmnistClassifier()
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{model_dir}: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval()
