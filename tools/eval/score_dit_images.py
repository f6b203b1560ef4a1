#!/usr/bin/env python3
"""Scores tern-demo-dit images made anywhere (ternd's GenerateImage, `tern image`, the OpenAI images
route: 32x32 8-bit greyscale PNGs) as tools/eval/eval_dit.py scores the PyTorch sampler's: class
accuracy (fmnist-classifier's top class is the requested one) and the Frechet distance between the
classifier's 128-d penultimate features of the images and of the 10,000 Fashion-MNIST test images.
numpy only: the classifier runs in numpy (fmnist_classifier_np.py) and the test set enters as stored
statistics (mean and covariance of its features), so neither PyTorch nor the data set is needed.

Score a directory whose subdirectories are the requested classes (DIR/0/*.png ... DIR/9/*.png):
  python3 tools/eval/score_dit_images.py DIR [--reference tools/eval/fmnist_test_features.safetensors]
      [--classifier models/fmnist-classifier] [--json out.json] [--check-torch]
--check-torch also runs the PyTorch classifier (tools/train/dit/classifier.py) on the same images and
prints the largest feature difference and any disagreeing predictions.

Write the reference statistics (the test images from the packed file of tools/train/dit/fmnist.py
or from the idx files of Debian's dataset-fashion-mnist):
  python3 tools/eval/score_dit_images.py --write-reference tools/eval/fmnist_test_features.safetensors \\
      --data /usr/share/datasets/fashion-mnist
It prints the classifier's test accuracy (model card: 91.54 %)."""
import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "dit"))
import fmnist  # noqa: E402
import st_io  # noqa: E402
from fmnist_classifier_np import FmnistClassifier, weights_sha256  # noqa: E402
from frechet import frechet_distance_stats, gaussian_stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REFERENCE = os.path.join(HERE, "fmnist_test_features.safetensors")
IMAGE_SIDE = 32


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="?", help="directory of class subdirectories 0..9 holding PNGs")
    ap.add_argument("--classifier", default=os.path.join(HERE, "..", "..", "models", "fmnist-classifier"))
    ap.add_argument("--reference", default=DEFAULT_REFERENCE, help="stored test-set feature statistics")
    ap.add_argument("--json", default="", help="also write the scores here")
    ap.add_argument("--check-torch", action="store_true", help="compare with the PyTorch classifier")
    ap.add_argument("--write-reference", default="", help="compute the test-set statistics into this file")
    ap.add_argument("--data", default=fmnist.DEBIAN_DIR,
                    help="for --write-reference: a packed .xz file (fmnist.py) or a directory of idx files")
    a = ap.parse_args()
    if bool(a.images) == bool(a.write_reference):
        ap.error("give an image directory to score, or --write-reference FILE")
    return a


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def read_png(path):
    """An 8-bit, non-interlaced PNG -> uint8 [h, w, channels] (greyscale 1, grey+alpha 2, RGB 3,
    RGBA 4). ValueError naming the file for anything else."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"{path}: truncated {tag!r} chunk")
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError(f"{path}: no IHDR or IDAT chunk")
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 4: 2, 2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"{path}: {depth}-bit colour type {color} interlace {interlace}; "
                         "expected 8-bit greyscale/RGB(A), not interlaced")
    stride = width * channels
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        raise ValueError(f"{path}: {len(raw)} bytes of scanlines; expected {height * (stride + 1)}")
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for r in range(height):
        kind, line = rows[r, 0], rows[r, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind in (1, 3, 4):  # these depend on the reconstructed left neighbour: byte by byte
            cur = np.zeros(stride, np.int32)
            for i in range(stride):
                left = cur[i - channels] if i >= channels else 0
                up_left = prev[i - channels] if i >= channels else 0
                pred = left if kind == 1 else (left + prev[i]) // 2 if kind == 3 else _paeth(left, prev[i], up_left)
                cur[i] = (line[i] + pred) & 0xFF
        else:
            raise ValueError(f"{path}: row {r} has filter type {kind}")
        out[r] = cur
        prev = cur
    return out.astype(np.uint8).reshape(height, width, channels)


def load_images(directory):
    """DIR/<class>/*.png -> (uint8 [n, 32, 32], requested classes [n], file names [n]), sorted."""
    pixels, labels, names = [], [], []
    classes = sorted((d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d))), key=str)
    for d in classes:
        if not d.isdigit() or not 0 <= int(d) < 10:
            raise ValueError(f"{directory}/{d}: class directories are named 0..9")
        for name in sorted(os.listdir(os.path.join(directory, d))):
            if not name.endswith(".png"):
                continue
            path = os.path.join(directory, d, name)
            img = read_png(path)
            if img.shape != (IMAGE_SIDE, IMAGE_SIDE, 1):
                raise ValueError(f"{path}: image {img.shape[1]}x{img.shape[0]} with {img.shape[2]} channels; "
                                 f"expected {IMAGE_SIDE}x{IMAGE_SIDE} greyscale")
            pixels.append(img[:, :, 0])
            labels.append(int(d))
            names.append(f"{d}/{name}")
    if not pixels:
        raise ValueError(f"{directory}: no PNG in a class directory 0..9")
    return np.stack(pixels), np.array(labels), names


def to_model_space(u8):
    """uint8 [n, 32, 32] -> float32 [n, 1, 32, 32] in [-1, 1], as eval_dit.py's quantize()."""
    return (u8.astype(np.float32) / 127.5 - 1.0)[:, None]


def load_test_set(data):
    if os.path.isdir(data):
        x, y = fmnist.read_split("test", data)
    else:
        packed = fmnist.load_packed(data)
        x, y = packed["test_x"], packed["test_y"]
    return fmnist.to_model_space(x), np.asarray(y)


def write_reference(a):
    x, y = load_test_set(a.data)
    clf = FmnistClassifier.load(a.classifier)
    feats, logits = clf.run(x)
    accuracy = float((logits.argmax(1) == y).mean())
    mu, cov = gaussian_stats(feats)
    st_io.save(a.write_reference, {"mean": mu, "covariance": cov}, {
        "what": "fmnist-classifier penultimate features (128-d, float32 numpy inference) of the Fashion-MNIST "
                "test images; covariance unbiased (ddof 1)",
        "images": str(len(y)), "classifier_sha256": weights_sha256(a.classifier),
        "classifier_test_accuracy": f"{accuracy:.4f}"})
    print(f"wrote {a.write_reference}: {len(y)} test images, classifier test accuracy {accuracy:.4f}")


def check_torch(a, x, feats, logits):
    import torch  # the GPU machine has it; this machine may not
    import loading
    clf = loading.load_classifier(a.classifier, "cpu")
    with torch.no_grad():
        tf = clf.features(torch.from_numpy(x))
        tl = clf.fc2(tf)
    tf, tl = tf.numpy(), tl.numpy()
    diff = float(np.abs(tf - feats).max())
    disagree = int((tl.argmax(1) != logits.argmax(1)).sum())
    print(f"PyTorch {torch.__version__} classifier: max |feature difference| {diff:.3g} "
          f"(features up to {float(np.abs(tf).max()):.3g}), {disagree} of {len(x)} predictions differ")
    return {"torch": torch.__version__, "max_feature_difference": diff, "predictions_differing": disagree}


def score(a):
    stored, meta = st_io.load(a.reference)
    sha = weights_sha256(a.classifier)
    if meta.get("classifier_sha256") != sha:
        sys.exit(f"{a.reference} was computed with classifier weights {meta.get('classifier_sha256')}, "
                 f"not {a.classifier}'s ({sha}): rewrite it with --write-reference")
    u8, labels, names = load_images(a.images)
    x = to_model_space(u8)
    clf = FmnistClassifier.load(a.classifier)
    feats, logits = clf.run(x)
    pred = logits.argmax(1)
    mu, cov = gaussian_stats(feats)
    fd = frechet_distance_stats(mu, cov, stored["mean"], stored["covariance"])
    per_class = {int(c): float((pred[labels == c] == c).mean()) for c in np.unique(labels)}
    result = {"images": a.images, "count": int(len(labels)), "class_accuracy": float((pred == labels).mean()),
              "per_class_accuracy": per_class, "fd": fd, "fd_reference": meta.get("what", ""),
              "reference_images": int(meta.get("images", "0")), "classifier": a.classifier,
              "misclassified": [f"{n}: {int(p)}" for n, p, y in zip(names, pred, labels) if p != y]}
    print(f"{len(labels)} images in {len(per_class)} classes: class accuracy {100 * result['class_accuracy']:.1f} %, "
          f"FD {fd:.3f} (against the {result['reference_images']} test images)")
    print("per class: " + ", ".join(f"{c}: {100 * v:.0f} %" for c, v in per_class.items()))
    if a.check_torch:
        result["torch_check"] = check_torch(a, x, feats, logits)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


def main():
    a = parse_args()
    if a.write_reference:
        write_reference(a)
    else:
        score(a)


if __name__ == "__main__":
    main()
