"""fmnist-classifier's inference in numpy (float32), from its model.safetensors: the same network as
tools/train/dit/classifier.py in eval mode (BatchNorm from its running statistics), for scoring
images where PyTorch is not installed. score_dit_images.py --check-torch compares the two.

  clf = FmnistClassifier.load("models/fmnist-classifier")
  features, logits = clf.run(x)   # x float32 [n, 1, 32, 32] in [-1, 1] -> [n, 128], [n, 10]
"""
import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "dit"))
import st_io  # noqa: E402

CONV_CHANNELS = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128)]
POOL_AFTER = (1, 3)  # 2x2 max-pool after these convolutions
BATCHNORM_EPS = 1e-5


def weights_sha256(model_dir):
    """sha256 (hex) of the classifier's model.safetensors: names the weights reference statistics
    were computed with."""
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _conv3x3(x, w):
    """x [n, c, h, w] float32, w [o, c, 3, 3]: stride 1, zero padding 1, no bias -> [n, o, h, w]."""
    n, c, h, wd = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    # columns [n, h, w, c * 9] in (c, ky, kx) order, the order of w's trailing dims.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # [n, c, h, w, 3, 3]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 9)
    out = cols @ w.reshape(w.shape[0], -1).T  # [n h w, o]
    return out.reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


class FmnistClassifier:
    def __init__(self, tensors):
        self.convs = []
        for i, (cin, cout) in enumerate(CONV_CHANNELS):
            w = tensors[f"convs.{i}.weight"].astype(np.float32)
            if w.shape != (cout, cin, 3, 3):
                raise ValueError(f"convs.{i}.weight has shape {w.shape}; expected {(cout, cin, 3, 3)}")
            bn = {k: tensors[f"bns.{i}.{k}"].astype(np.float64) for k in ("weight", "bias", "running_mean",
                                                                          "running_var")}
            # Eval-mode BatchNorm as one scale and shift per channel.
            scale = bn["weight"] / np.sqrt(bn["running_var"] + BATCHNORM_EPS)
            shift = bn["bias"] - bn["running_mean"] * scale
            self.convs.append((w, scale.astype(np.float32)[:, None, None], shift.astype(np.float32)[:, None, None]))
        self.fc1 = (tensors["fc1.weight"].astype(np.float32), tensors["fc1.bias"].astype(np.float32))
        self.fc2 = (tensors["fc2.weight"].astype(np.float32), tensors["fc2.bias"].astype(np.float32))
        if self.fc1[0].shape != (128, 128) or self.fc2[0].shape != (10, 128):
            raise ValueError(f"fc1 {self.fc1[0].shape}, fc2 {self.fc2[0].shape}; expected (128, 128), (10, 128)")

    @classmethod
    def load(cls, model_dir):
        tensors, _ = st_io.load(os.path.join(model_dir, "model.safetensors"))
        return cls(tensors)

    def run(self, x, batch=256):
        """x float32 [n, 1, 32, 32] in [-1, 1] -> (penultimate features [n, 128], logits [n, 10])."""
        feats, logits = [], []
        for i in range(0, len(x), batch):
            h = np.asarray(x[i:i + batch], np.float32)
            for k, (w, scale, shift) in enumerate(self.convs):
                h = np.maximum(_conv3x3(h, w) * scale + shift, 0.0)
                if k in POOL_AFTER:
                    n, c, hh, ww = h.shape
                    h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
            f = np.maximum(h.mean(axis=(2, 3)) @ self.fc1[0].T + self.fc1[1], 0.0)
            feats.append(f)
            logits.append(f @ self.fc2[0].T + self.fc2[1])
        return np.concatenate(feats), np.concatenate(logits)
