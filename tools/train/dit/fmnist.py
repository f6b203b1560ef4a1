"""Fashion-MNIST for tern-demo-dit: reads the original idx files (Debian package
dataset-fashion-mnist, /usr/share/datasets/fashion-mnist), packs a seeded class-balanced training
subset plus the whole test set into one xz file that fits the GPU machine's carry, and loads it.

Packed file (xz-compressed): magic b"FMNISTP1", then uint32 LE counts n_train, n_test, then
n_train*784 train pixels, n_train train labels, the 10000-image test set the same way, then the
n_train source indices (uint32 LE, positions in the original 60000-image training file)."""
import gzip
import lzma
import os
import struct

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MAGIC = b"FMNISTP1"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_split(split, root=DEBIAN_DIR):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
    return x, y


def balanced_subset(labels, per_class, seed):
    """Sorted indices: `per_class` images of each class, drawn without replacement by
    numpy.random.default_rng(seed).permutation over the whole training set (first ones of each
    class in permutation order)."""
    perm = np.random.default_rng(seed).permutation(len(labels))
    picked = np.concatenate([perm[labels[perm] == c][:per_class] for c in range(10)])
    return np.sort(picked)


def pack(path, per_class, seed, root=DEBIAN_DIR):
    xtr, ytr = read_split("train", root)
    xte, yte = read_split("test", root)
    idx = balanced_subset(ytr, per_class, seed)
    body = (MAGIC + struct.pack("<II", len(idx), len(yte)) + xtr[idx].tobytes() + ytr[idx].tobytes()
            + xte.tobytes() + yte.tobytes() + idx.astype("<u4").tobytes())
    with open(path, "wb") as f:
        f.write(lzma.compress(body, preset=9 | lzma.PRESET_EXTREME))
    return idx


def load_packed(path):
    """-> dict train_x [n,28,28] u8, train_y [n] u8, test_x, test_y, train_index [n] (positions in
    the original training file)."""
    with open(path, "rb") as f:
        b = lzma.decompress(f.read())
    if b[:8] != MAGIC:
        raise ValueError(f"{path}: not a packed Fashion-MNIST file")
    ntr, nte = struct.unpack("<II", b[8:16])
    o = 16
    out = {}
    for name, n in (("train", ntr), ("test", nte)):
        out[f"{name}_x"] = np.frombuffer(b, np.uint8, n * 784, o).reshape(n, 28, 28)
        o += n * 784
        out[f"{name}_y"] = np.frombuffer(b, np.uint8, n, o)
        o += n
    out["train_index"] = np.frombuffer(b, "<u4", ntr, o)
    return out


def to_model_space(x_u8):
    """uint8 [n, 28, 28] -> float32 [n, 1, 32, 32] in [-1, 1]: 2-pixel border of value 0 (black)
    on every side, then x / 127.5 - 1."""
    x = np.pad(x_u8, ((0, 0), (2, 2), (2, 2)))
    return (x.astype(np.float32) / 127.5 - 1.0)[:, None]


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="pack the carried Fashion-MNIST subset")
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-class", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=2024)
    a = ap.parse_args()
    idx = pack(a.out, a.per_class, a.seed)
    print(f"wrote {a.out}: {len(idx)} training images ({a.per_class} per class, seed {a.seed}) + 10000 test,"
          f" {os.path.getsize(a.out)} bytes")
