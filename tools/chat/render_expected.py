#!/usr/bin/python3
"""Renders tern's chat-template test cases with the reference renderer, Jinja2.

Run with Debian's interpreter and python3-jinja2 (apt-get install python3-jinja2):

    /usr/bin/python3 tools/chat/render_expected.py          # rewrite the golden files
    /usr/bin/python3 tools/chat/render_expected.py --check  # fail if any would change

Inputs (tests/data/chat-templates/):
  templates.json      templates to render: a .jinja file with its bos/eos tokens, or a
                      model directory whose tokenizer_config.json holds the template
  conversations.json  conversations: messages, add_generation_prompt, extra variables
  snippets.json       small templates exercising single interpreter features

Outputs (tests/data/chat-templates/expected/):
  <template>/<conversation>.txt    the rendered prompt, byte for byte
  <template>/<conversation>.error  "<ExceptionType>: <message>" when Jinja2 raises
  snippets.json                    per snippet {"output": ...} or {"error": ...}

Jinja2 is set up the way Hugging Face transformers sets it up for
apply_chat_template (transformers/utils/chat_template_utils.py): an
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the loopcontrols
extension; tojson is json.dumps with ensure_ascii=False; raise_exception raises
TemplateError; strftime_now formats a fixed time here so the files are stable.
"""

import argparse
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "chat-templates")
EXPECTED = os.path.join(DATA, "expected")

# strftime_now() returns this time, so golden files do not depend on the day they were made.
# The C++ test sets ChatTemplateInputs::now to the same instant.
FIXED_NOW = datetime.datetime(2024, 7, 26, 9, 30, 5)


class GenerationBlock(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %} renders its body, like HF's AssistantTracker
    when no assistant mask is requested."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_token(config, field):
    value = config.get(field)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def load_template(entry):
    """Returns (source, bos_token, eos_token) for one templates.json entry."""
    if "model_dir" in entry:
        model_dir = os.path.join(DATA, entry["model_dir"])
        jinja_path = os.path.join(model_dir, "chat_template.jinja")
        with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        if os.path.exists(jinja_path):
            with open(jinja_path, encoding="utf-8", newline="") as f:
                source = f.read()
        else:
            source = config["chat_template"]
            if isinstance(source, list):
                source = next(t["template"] for t in source if t.get("name") == "default")
        return source, special_token(config, "bos_token"), special_token(config, "eos_token")
    with open(os.path.join(DATA, entry["path"]), encoding="utf-8", newline="") as f:
        source = f.read()
    return source, entry["bos_token"], entry["eos_token"]


def render(env, source, variables):
    """Returns ("output", text) or ("error", "<Type>: <message>")."""
    try:
        return "output", env.from_string(source).render(**variables)
    except Exception as e:  # every failure is a golden result too
        return "error", f"{type(e).__name__}: {e}"


def conversation_variables(conversation, bos_token, eos_token):
    # The keyword arguments transformers' apply_chat_template passes to render().
    variables = {
        "messages": conversation["messages"],
        "tools": None,
        "documents": None,
        "add_generation_prompt": conversation["add_generation_prompt"],
        "bos_token": bos_token,
        "eos_token": eos_token,
    }
    variables.update(conversation.get("variables", {}))
    return variables


def expected_files(env):
    """Maps a path relative to EXPECTED to its contents."""
    files = {}
    with open(os.path.join(DATA, "templates.json"), encoding="utf-8") as f:
        templates = json.load(f)
    with open(os.path.join(DATA, "conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)
    for entry in templates:
        source, bos_token, eos_token = load_template(entry)
        for conversation in conversations:
            kind, text = render(env, source, conversation_variables(conversation, bos_token, eos_token))
            suffix = ".txt" if kind == "output" else ".error"
            files[os.path.join(entry["name"], conversation["name"] + suffix)] = text
    with open(os.path.join(DATA, "snippets.json"), encoding="utf-8") as f:
        snippets = json.load(f)
    results = []
    for snippet in snippets:
        kind, text = render(env, snippet["template"], snippet.get("variables", {}))
        results.append({"template": snippet["template"], kind: text})
    files["snippets.json"] = json.dumps(results, indent=1, ensure_ascii=False) + "\n"
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    files = expected_files(make_environment())
    stale = []
    for relative, text in sorted(files.items()):
        path = os.path.join(EXPECTED, relative)
        current = None
        if os.path.exists(path):
            with open(path, encoding="utf-8", newline="") as f:
                current = f.read()
        if current == text:
            continue
        stale.append(relative)
        if not args.check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
    known = set(files)
    for directory, _, names in os.walk(EXPECTED):
        for name in names:
            relative = os.path.relpath(os.path.join(directory, name), EXPECTED)
            if relative not in known:
                stale.append(relative + " (no longer produced)")
                if not args.check:
                    os.remove(os.path.join(directory, name))
    print(f"jinja2 {jinja2.__version__}: {len(files)} golden files, {len(stale)} "
          f"{'differ' if args.check else 'written or removed'}")
    for relative in stale:
        print("  " + relative)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
