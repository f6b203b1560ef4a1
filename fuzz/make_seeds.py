#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from real files in the tree.

Large real files are cut down to a few kilobytes the same way the loaders read
them (a safetensors file keeps its header's names and dtypes with tiny shapes; a
tokenizer keeps its first pieces and the merges among them), so that libFuzzer
mutates small, valid inputs. Requests are tern.v1 messages encoded by protoc
from text format. Run from anywhere; needs python3 and protoc. Rewrites the
seeds in place (inputs added later, such as crash reproducers, are kept).
"""
import hashlib
import json
import pathlib
import struct
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write_seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


# --- safetensors -------------------------------------------------------------

DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def small_safetensors(path, keep):
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    out_header, data = {}, b""
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    names = [n for n in header if n != "__metadata__"][:keep]
    for name in names:
        entry = header[name]
        shape = [min(d, 3) for d in entry["shape"]]
        count = 1
        for d in shape:
            count *= d
        nbytes = count * DTYPE_SIZES[entry["dtype"]]
        begin = entry["data_offsets"][0] + 8 + header_len
        out_header[name] = {"dtype": entry["dtype"], "shape": shape,
                            "data_offsets": [len(data), len(data) + nbytes]}
        data += raw[begin:begin + nbytes]
    text = json.dumps(out_header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    for model in ("tern-demo-llm", "tern-demo-dit", "fmnist-classifier"):
        write_seed("safetensors_fuzzer", model, small_safetensors(ROOT / "models" / model / "model.safetensors", 6))


# --- config.json -------------------------------------------------------------

def model_config_seeds():
    llm = json.loads((ROOT / "models/tern-demo-llm/config.json").read_text())
    write_seed("model_config_fuzzer", "tern-demo-llm", json.dumps(llm, indent=1))
    write_seed("model_config_fuzzer", "tern-demo-dit", (ROOT / "models/tern-demo-dit/config.json").read_text())
    quantized = {
        "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "sym": True},
        "awq": {"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True,
                "modules_to_not_convert": ["lm_head"]},
        "fp8": {"quant_method": "fp8", "activation_scheme": "dynamic", "ignored_layers": ["lm_head"]},
        "compressed-tensors": {
            "quant_method": "compressed-tensors", "format": "int-quantized",
            "config_groups": {"group_0": {
                "targets": ["Linear", "re:.*down_proj"],
                "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
                "input_activations": {"num_bits": 8, "type": "int", "symmetric": True,
                                      "strategy": "token", "dynamic": True}}},
            "ignore": ["lm_head"]},
    }
    for name, quantization in quantized.items():
        config = dict(llm, quantization_config=quantization)
        write_seed("model_config_fuzzer", f"tern-demo-llm-{name}", json.dumps(config))
    mixtral = dict(llm, architectures=["MixtralForCausalLM"], model_type="mixtral", num_local_experts=4,
                   num_experts_per_tok=2, rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 64})
    write_seed("model_config_fuzzer", "tern-demo-llm-as-mixtral", json.dumps(mixtral))
    # MoA plans (runtime/model/moa_plan.h): thu-nics/MoA's alphas/betas and tern's bucketed form.
    moa = {"alphas": [[1024.0, -512.0, 64.0], [0.0, 256.0, 2048.0]],
           "betas": [[0.0, 0.5, 0.25], [1.0, 0.125, 0.0]]}
    write_seed("model_config_fuzzer", "moa-plan", json.dumps(moa))
    tern_plan = {"format": "tern.moa.v1", "num_layers": 2, "num_heads": 3, "reference_length": 200,
                 "sinks": [[4, 0, 16], [64, 8, 0]],
                 "buckets": [{"max_length": 96, "alphas": [[8, 12, 4], [6, 10, 20]],
                              "betas": [[0.0, 0.125, 0.25], [0.1, 0.0, 0.0]]},
                             {"alphas": [[12, 12, 6], [8, 10, 20]], "betas": [[0.0, 0.125, 0.25], [0.1, 0.0, 1.0]]}]}
    write_seed("model_config_fuzzer", "tern-moa-plan", json.dumps(tern_plan))


# --- tokenizers --------------------------------------------------------------

def small_tokenizer_json(path, keep, added_keep):
    doc = json.loads(path.read_text())
    vocab = {piece: i for piece, i in doc["model"]["vocab"].items() if i < keep}
    merges = []
    for merge in doc["model"]["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(merge)
    added = []
    for i, token in enumerate(doc["added_tokens"][:added_keep]):
        token = dict(token, id=keep + i) if token["id"] >= keep else token
        added.append(token)
        vocab.setdefault(token["content"], token["id"])
    doc["model"]["vocab"] = vocab
    doc["model"]["merges"] = merges
    doc["added_tokens"] = added
    if isinstance(doc.get("post_processor"), dict) and doc["post_processor"].get("type") == "TemplateProcessing":
        doc["post_processor"]["special_tokens"] = {
            k: dict(v, ids=[vocab.get(k, 0)]) for k, v in doc["post_processor"].get("special_tokens", {}).items()}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def read_varint(data, pos):
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def proto_fields(data):
    """Top-level (field number, raw bytes of the whole field) of a protobuf message."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = read_varint(data, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
        yield key >> 3, data[start:pos]


def small_sentencepiece(path, keep):
    out, pieces = b"", 0
    for number, raw in proto_fields(path.read_bytes()):
        if number == 1:  # ModelProto.pieces
            pieces += 1
            if pieces > keep:
                continue
        out += raw
    return out


def tokenizer_seeds():
    write_seed("tokenizer_json_fuzzer", "tern-demo-llm",
               small_tokenizer_json(ROOT / "models/tern-demo-llm/tokenizer.json", 320, 3))
    write_seed("tokenizer_json_fuzzer", "llama3",
               small_tokenizer_json(ROOT / "tests/data/tokenizers/llama3/tokenizer.json", 300, 4))
    write_seed("tokenizer_model_fuzzer", "llama2",
               small_sentencepiece(ROOT / "tests/data/tokenizers/llama2/tokenizer.model", 400))
    # Encode seeds: the golden test texts; byte 0 = tokenizer (bits 0-1) and flags.
    for model in ("llama2", "llama3"):
        text = (ROOT / f"tests/data/tokenizers/{model}/ggml-vocab-llama-{'spm' if model == 'llama2' else 'bpe'}"
                f".gguf.inp").read_text()
        for i, case in enumerate(t for t in text.split("\n__ggml_vocab_test__\n") if t):
            if i % 3:
                continue  # every third case keeps the corpus small
            for tokenizer in range(3):
                write_seed("tokenizer_codec_fuzzer", f"{model}-{i}-{tokenizer}",
                           bytes([tokenizer | 8 | 32]) + case.encode())
    ids = b"".join(struct.pack("<H", i) for i in (1, 15043, 3186, 29991, 13, 0, 2, 259, 260))
    for tokenizer in range(3):
        write_seed("tokenizer_codec_fuzzer", f"decode-{tokenizer}", bytes([tokenizer | 4]) + ids)


# --- chat templates ----------------------------------------------------------

def chat_template_seeds():
    folder = ROOT / "tests/data/chat-templates"
    for template in sorted(folder.glob("*.jinja")):
        write_seed("chat_template_fuzzer", template.stem, template.read_text())
    write_seed("chat_template_fuzzer", "llama2-with-message",
               (folder / "meta-llama-Llama-2-7b-chat-hf.jinja").read_text() + "\0Say \"hi\" {{ x }} \u00e9\n")
    for i, snippet in enumerate(json.loads((folder / "snippets.json").read_text())):
        write_seed("chat_template_fuzzer", f"snippet-{i}", snippet["template"])
    config = json.loads((ROOT / "models/tern-demo-llm/tokenizer_config.json").read_text())
    write_seed("chat_template_fuzzer", "tern-demo-llm", config["chat_template"])


# --- tern.v1 requests --------------------------------------------------------

REQUESTS = {
    # (selector byte: 0 Generate, 1 Chat, 2 Tokenize, 3 Detokenize, 4 GenerateImage; +0x80 tight limits)
    "generate-text": (0, "GenerateRequest", 'model: "tern-demo-llm" text: "Once upon a time" '
                      'sampling { temperature: 0.7 top_p: 0.9 max_tokens: 16 n: 2 stop: "\\n" logprobs: 2 }'),
    "generate-ids": (0, "GenerateRequest", 'model: "m" token_ids { ids: [1, 15043, 3186] } priority: -5 '
                     'request_id: "r-1" sampling { seed: 7 stop_token_ids: [2] ignore_eos: true }'),
    "generate-sot": (0, "GenerateRequest", 'model: "m" text: "How do I learn to cook?" '
                     'decoding_mode: DECODING_MODE_SKELETON_OF_THOUGHT sot { ordered: true max_point_tokens: 64 }'),
    "generate-outline": (0x80, "GenerateRequest", 'model: "m" text: "Plan a trip" sot { outline: ["Budget", '
                         '"Route", "Packing"] } sampling { max_tokens: 30 }'),
    "chat": (1, "ChatRequest", 'model: "tern-demo-llm" messages { role: "system" content: "Be brief." } '
             'messages { role: "user" content: "What is 2+2?" } sampling { temperature: 0 } '
             'add_generation_prompt: true'),
    "chat-sot": (1, "ChatRequest", 'model: "m" messages { role: "user" content: "Tips for sleep?" } '
                 'decoding_mode: DECODING_MODE_AUTO sot { max_point_tokens: 32 }'),
    "tokenize": (2, "TokenizeRequest", 'model: "m" text: "Hello world" add_special_tokens: false'),
    "detokenize": (3, "DetokenizeRequest", 'model: "m" ids: [1, 2, 3] skip_special_tokens: true'),
    "image": (4, "GenerateImageRequest", 'model: "tern-demo-dit" class_label: 3 width: 32 height: 32 '
              'steps: 20 guidance_scale: 4.0 batch: 2 seed: 1'),
}


def request_seeds():
    for name, (selector, message, text) in REQUESTS.items():
        proto = "tern/v1/diffusion.proto" if message == "GenerateImageRequest" else "tern/v1/llm.proto"
        encoded = subprocess.run(["protoc", "-I", str(ROOT / "proto"), f"--encode=tern.v1.{message}", proto],
                                 input=text.encode(), capture_output=True, check=True).stdout
        write_seed("request_validation_fuzzer", name, bytes([selector]) + encoded)


# --- OpenAI-compatible request bodies ----------------------------------------

OPENAI_BODIES = {
    # name: (control byte: bit 0 completions, bit 7 tight limits; body)
    "chat": (0, {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hi"}],
                 "temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "n": 2, "stop": ["\n\n"], "seed": 7}),
    "chat-stream": (0, {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                        "stream": True, "stream_options": {"include_usage": True}, "logprobs": True,
                        "top_logprobs": 2, "max_completion_tokens": 8}),
    "chat-extras": (0x80, {"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                           "decoding_mode": "skeleton_of_thought", "sot": {"outline": ["a", "b"], "max_point_tokens": 4},
                           "priority": 3, "top_k": -1, "min_p": 0.1, "repetition_penalty": 1.1, "ignore_eos": True,
                           "stop_token_ids": [2], "response_format": {"type": "text"}}),
    "completion": (1, {"model": "m", "prompt": "Once upon a time", "max_tokens": 8, "logprobs": 1}),
    "completion-ids": (0x81, {"model": "m", "prompt": [[1, 2, 3]], "stream": True, "echo": False}),
}


def openai_seeds():
    for name, (control, body) in OPENAI_BODIES.items():
        write_seed("openai_request_fuzzer", name, bytes([control]) + json.dumps(body).encode())


# --- server config -----------------------------------------------------------

def server_config_seeds():
    example = json.loads((ROOT / "deploy/config/example.json").read_text())
    write_seed("server_config_fuzzer", "example", json.dumps(example, indent=1))
    hashed = json.loads(json.dumps(example))
    for tenant in hashed["tenants"]:
        tenant["apiKeySha256"] = [hashlib.sha256(k.encode()).hexdigest() for k in tenant.pop("apiKeys")]
    hashed["auth"] = {"enabled": True}
    hashed["engineStallTimeoutSeconds"] = 2.5
    write_seed("server_config_fuzzer", "example-hashed-keys", json.dumps(hashed))
    write_seed("server_config_fuzzer", "empty", "{}")


def main():
    safetensors_seeds()
    model_config_seeds()
    tokenizer_seeds()
    chat_template_seeds()
    request_seeds()
    openai_seeds()
    server_config_seeds()
    for folder in sorted(CORPUS.iterdir()):
        files = list(folder.iterdir())
        print(f"{folder.name}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
