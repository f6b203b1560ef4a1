"""Hugging Face transformers runs shared by the device comparison scripts:
load a tern-mkmodel directory on the GPU, decode greedily with `generate`,
and replay a given token sequence one forward per token with the KV cache
(teacher forcing), which computes what `generate` computes step by step."""
import torch
import transformers


def load(model_dir, dtype, attn="sdpa"):
    """The model on the GPU in dtype, with the given attention implementation."""
    return transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation=attn).cuda().eval()


def generate(model, prompt, steps):
    """Greedy tokens (steps + 1) and the float32 logits of each step. The
    attention mask is given: generate would otherwise mask every prompt
    token equal to the pad id."""
    ids = torch.tensor([prompt]).cuda()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps + 1, do_sample=False,
                             pad_token_id=model.config.pad_token_id or 0, output_logits=True,
                             return_dict_in_generate=True)
    return out.sequences[0][len(prompt):].tolist(), [s[0].float().cpu() for s in out.logits]


def replay(model, prompt, tokens):
    """Logits of the prompt's last position, then of feeding each of
    tokens[:-1] in turn: len(tokens) steps, aligned with generate's."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]).cuda(), use_cache=True)
        logits = [out.logits[0, -1].float().cpu()]
        for token in tokens[:-1]:
            out = model(input_ids=torch.tensor([[token]]).cuda(), past_key_values=out.past_key_values,
                        use_cache=True)
            logits.append(out.logits[0, -1].float().cpu())
    return logits


def step_errors(got, want):
    """Per step: max |got - want| / max |want| (compare_hf.py's metric)."""
    return [float((torch.as_tensor(g) - w).abs().max() / w.abs().max()) for g, w in zip(got, want)]


def step_l2_errors(got, want):
    """Per step: ||got - want||_2 / ||want||_2, the normwise relative error."""
    return [float((torch.as_tensor(g) - w).norm() / w.norm()) for g, w in zip(got, want)]


def greedy_flips(got, want):
    """Steps whose argmax differs."""
    return sum(int(torch.as_tensor(g).argmax() != w.argmax()) for g, w in zip(got, want))


def free():
    torch.cuda.empty_cache()
