"""The attention-influence files profile_influence.py writes and search.py reads (no torch or numpy needed
to read them).

One profile at one length is two files:
    <stem>.json   {"format": "tern.moa.influence.v1", "length": L, "block": B, "num_layers": ...,
                   "num_heads": ..., "num_blocks": nb, "sequences": n, "model": "..."}
    <stem>.f32    float32 little-endian [num_layers, num_heads, nb, nb]: entry (l, h, qb, kb) is the
                  summed |first-order loss change| of dropping each key of key block kb from the
                  softmax of each query of query block qb (profile_influence.py states the formula); entries
                  above the diagonal are 0.
"""
import array
import json
import os
import sys

FORMAT = "tern.moa.influence.v1"


def write(stem, meta, values):
    """values: a flat sequence of floats in [layer][head][qb][kb] order."""
    meta = dict(meta, format=FORMAT)
    expected = meta["num_layers"] * meta["num_heads"] * meta["num_blocks"] ** 2
    buf = array.array("f", values)
    if len(buf) != expected:
        raise ValueError(f"{stem}: {len(buf)} values, expected {expected}")
    if sys.byteorder != "little":
        buf.byteswap()
    with open(stem + ".f32", "wb") as f:
        buf.tofile(f)
    with open(stem + ".json", "w") as f:
        json.dump(meta, f, indent=1)


def read(stem):
    """Returns (meta, values) with values a flat array('f')."""
    if stem.endswith(".json") or stem.endswith(".f32"):
        stem = os.path.splitext(stem)[0]
    with open(stem + ".json") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{stem}.json: format is {meta.get('format')!r}, expected {FORMAT!r}")
    count = meta["num_layers"] * meta["num_heads"] * meta["num_blocks"] ** 2
    values = array.array("f")
    with open(stem + ".f32", "rb") as f:
        values.fromfile(f, count)
    if sys.byteorder != "little":
        values.byteswap()
    return meta, values
