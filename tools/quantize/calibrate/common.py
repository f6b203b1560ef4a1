"""What tern's calibrated quantizers share: the model, the calibration text, tern's grids, the writer.

PyTorch and transformers (the GPU machine). The packers and readers of the published formats are
check_dequant.py's (one level up): the calibrated methods write what tern-quantize writes, packed by
the same code that checks tern's loaders.

Calibration text: the LIMA prompts the project carries (loadtest/prompts/lima.csv) by default, or
any UTF-8 text file. The WikiText-2 test split is the reporting set of bench/RESULTS.md and is
refused.
"""
import csv
import json
import os
import random
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import check_dequant  # noqa: E402  (tools/quantize/check_dequant.py: packers and readers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEFAULT_CALIBRATION = os.path.join(ROOT, "loadtest", "prompts", "lima.csv")

# A Llama-family decoder layer's linear layers, in the order they run, grouped by shared input:
# the members of one group read the same activations (tern fuses q/k/v and gate/up, so they must
# also share a scheme).
INPUT_GROUPS = [
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    ("self_attn.o_proj",),
    ("mlp.gate_proj", "mlp.up_proj"),
    ("mlp.down_proj",),
]
LINEARS = [name for group in INPUT_GROUPS for name in group]


def fail(message):
    """Exits with a one-line error naming the program."""
    raise SystemExit(f"{os.path.basename(sys.argv[0])}: {message}")


def device_or_fail(name):
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {name}: no CUDA device (pass --device cpu to run on the CPU, slowly)")
    return torch.device(name)


# ---------------------------------------------------------------- model


def check_dense_model_dir(path):
    """A dense Hugging Face Llama-family directory, or a precise error."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        fail(f"{path}: no config.json (expected a Hugging Face model directory)")
    with open(config_path) as f:
        config = json.load(f)
    if "quantization_config" in config:
        fail(f"{path} is already quantized; start from a dense checkpoint")
    if not any(n.endswith(".safetensors") for n in os.listdir(path)):
        fail(f"{path}: no *.safetensors weights")
    if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        fail(f"{path}: no tokenizer.json (the calibration text is tokenized with it)")
    return config


def load_model(path, device):
    """The model in float32 (calibration statistics in full precision), in eval mode."""
    check_dense_model_dir(path)
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except TypeError:  # transformers before `dtype`
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        fail(f"{path}: not a Llama-family decoder (no model.layers)")
    for i, layer in enumerate(layers):
        for name in LINEARS:
            if not isinstance(submodule(layer, name), torch.nn.Linear):
                fail(f"{path}: model.layers.{i}.{name} is missing or not a linear layer")
    return model.to(device).eval()


def submodule(root, dotted):
    for part in dotted.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def decoder_layers(model):
    return model.model.layers


# ---------------------------------------------------------------- calibration text


def read_documents(path):
    """Documents of a calibration file: the `request` column of a CSV, or a text file's paragraphs."""
    name = os.path.basename(path)
    if "wikitext-2-test" in name or name == "test.txt":
        fail(f"{path} is the WikiText-2 test split, the reporting set; calibrate on other text")
    if not os.path.isfile(path):
        fail(f"calibration file {path} does not exist")
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "request" not in (reader.fieldnames or []):
                fail(f"{path}: no `request` column (the prompt CSV layout of loadtest/prompts/README.md)")
            documents = [row["request"] for row in reader if row["request"].strip()]
    else:
        with open(path, encoding="utf-8") as f:
            documents = [p for p in f.read().split("\n\n") if p.strip()]
    if not documents:
        fail(f"{path}: no text")
    return documents


def calibration_batches(model_dir, path, samples, seq_len, seed):
    """`samples` token sequences of `seq_len` (int64 [samples, seq_len]) from the calibration file.

    The documents, shuffled by `seed`, are joined with the end-of-sequence token and cut into
    consecutive pieces of seq_len - 1 tokens, each after the beginning-of-sequence token (the
    model's training layout). Too little text for the request is an error naming what there is."""
    from tokenizers import Tokenizer

    if samples < 1 or seq_len < 2:
        fail(f"--samples {samples} --seq-len {seq_len}: need at least one sample of two tokens")
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    bos, eos = config.get("bos_token_id"), config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    if bos is None or eos is None:
        fail(f"{model_dir}/config.json: bos_token_id and eos_token_id are needed to frame the calibration text")
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    documents = read_documents(path)
    random.Random(seed).shuffle(documents)
    stream = []
    for doc in documents:
        stream.extend(tokenizer.encode(doc, add_special_tokens=False).ids)
        stream.append(eos)
    piece = seq_len - 1
    available = len(stream) // piece
    if available < samples:
        fail(f"{path} holds {len(stream)} tokens: {available} samples of {seq_len}, not {samples}; "
             f"ask for fewer or shorter samples")
    rows = [[bos] + stream[i * piece:(i + 1) * piece] for i in range(samples)]
    return torch.tensor(rows, dtype=torch.int64)


def lm_loss(model, batches, device, batch_size=8):
    """Mean next-token cross entropy (nats) of the model over the batches."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, batches.shape[0], batch_size):
            ids = batches[start:start + batch_size].to(device)
            logits = model(input_ids=ids).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     ids[:, 1:].reshape(-1), reduction="sum")
            total += loss.item()
            count += ids[:, 1:].numel()
    return total / count


def run_batches(model, batches, device, batch_size=8):
    """Runs the model over the batches for the hooks' sake."""
    with torch.no_grad():
        for start in range(0, batches.shape[0], batch_size):
            model(input_ids=batches[start:start + batch_size].to(device))


# ---------------------------------------------------------------- tern's weight-only grids


def parse_weight_only(spelling):
    """(bits, group_size or -1, symmetric) of a weight-only spelling: w4a16[-g<N>|-channel][-asym], w8a16..."""
    parts = spelling.split("-")
    if parts[0] not in ("w4a16", "w8a16"):
        raise ValueError(f"\"{spelling}\" is not a weight-only scheme (w4a16..., w8a16...)")
    bits = 4 if parts[0] == "w4a16" else 8
    group = 128 if bits == 4 else -1
    symmetric = True
    for part in parts[1:]:
        if part == "asym" and symmetric:
            symmetric = False
        elif part == "channel":
            group = -1
        elif part.startswith("g") and part[1:].isdigit() and int(part[1:]) in (32, 64, 128, 256):
            group = int(part[1:])
        else:
            raise ValueError(f"\"{spelling}\": \"{part}\" is not -g32/-g64/-g128/-g256, -channel or -asym")
    return bits, group, symmetric


def group_grid(w, bits, symmetric, min_zero):
    """Scale and zero code of each row of `w` [rows, n] (float32) as tern's RTN defines them.

    runtime/model/rtn_quantizer.h: symmetric scale 2 absmax / maxq with zero 2^(bits-1); else
    lo = min(min w, 0), hi = max(max w, 0), scale (hi - lo) / maxq, zero round(-lo / scale)
    clamped to [min_zero, maxq]; an all-zero row takes absmax 1 (lo -1, hi 1); the scale is
    rounded to fp16 (and never 0). Returns scale [rows] float32 and zero [rows] float32."""
    maxq = 2**bits - 1
    lo = w.amin(dim=1).clamp(max=0)
    hi = w.amax(dim=1).clamp(min=0)
    if symmetric:
        absmax = torch.maximum(-lo, hi)
        absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
        scale = 2 * absmax / maxq
    else:
        flat = (lo == 0) & (hi == 0)
        lo = torch.where(flat, -torch.ones_like(lo), lo)
        hi = torch.where(flat, torch.ones_like(hi), hi)
        scale = (hi - lo) / maxq
    scale = scale.half()
    if not torch.isfinite(scale).all():
        raise ValueError("a scale overflows fp16")
    scale = scale.float()
    scale = torch.where(scale == 0, torch.full_like(scale, 2.0**-24), scale)
    if symmetric:
        zero = torch.full_like(scale, float(2 ** (bits - 1)))
    else:
        zero = torch.round(-lo / scale).clamp(min_zero, maxq)
    return scale, zero


def quantize_codes(w, scale, zero, bits):
    """Codes of `w` [rows, n] under per-row scale/zero [rows]: clamp(round(w / scale) + zero, 0, maxq)."""
    return torch.clamp(torch.round(w / scale[:, None]) + zero[:, None], 0, 2**bits - 1)


def rtn_weight_only(w, bits, group, symmetric, min_zero):
    """Round-to-nearest of `w` [out, in] on tern's grid: the dequantized weight [out, in] (float32)."""
    out_features, in_features = w.shape
    group = group if group > 0 else in_features
    if in_features % group:
        raise ValueError(f"group size {group} does not divide in_features {in_features}")
    result = torch.empty_like(w, dtype=torch.float32)
    for start in range(0, in_features, group):
        x = w[:, start:start + group].float()
        scale, zero = group_grid(x, bits, symmetric, min_zero)
        result[:, start:start + group] = (quantize_codes(x, scale, zero, bits) - zero[:, None]) * scale[:, None]
    return result


# ---------------------------------------------------------------- writing checkpoints


def write_checkpoint(model_dir, out_dir, tensors, quantization_config=None):
    """Writes `tensors` (name -> CPU tensor) as out_dir/model.safetensors, config.json (with
    `quantization_config` when given) and every other file of model_dir (tokenizer, generation
    config) copied."""
    from safetensors.torch import save_file

    if os.path.abspath(out_dir) == os.path.abspath(model_dir):
        fail("--out must differ from --model")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if name.endswith(".safetensors") or name == "model.safetensors.index.json":
            os.remove(os.path.join(out_dir, name))
    save_file({k: v.detach().contiguous().cpu() for k, v in sorted(tensors.items())},
              os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for name in os.listdir(model_dir):
        src = os.path.join(model_dir, name)
        if (os.path.isfile(src) and name != "config.json" and not name.endswith(".safetensors")
                and name != "model.safetensors.index.json"):
            shutil.copyfile(src, os.path.join(out_dir, name))


def load_tensors(model_dir):
    """Every tensor of the directory's safetensors files, as stored (name -> CPU tensor)."""
    tensors, _ = check_dequant.load_dir(model_dir)
    return tensors
