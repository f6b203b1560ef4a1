#!/usr/bin/python3
"""Renders tern's Skeleton-of-Thought prompt test cases with the reference renderer, Jinja2.

Run with Debian's interpreter and python3-jinja2:

    /usr/bin/python3 tools/sot/render_sot_expected.py          # rewrite the golden files
    /usr/bin/python3 tools/sot/render_sot_expected.py --check  # fail if any would change

Inputs:
  tests/data/chat-templates/templates.json  the chat templates of tools/chat/render_expected.py
  tests/data/sot/prompt-cases.json           SoT prompt templates ("default" must equal
                                             SotPromptTemplates::Default(); the C++ test checks),
                                             more chat templates (a model directory, or none:
                                             the plain-text layout), and the cases: skeleton,
                                             point and router prompts for a question, an optional
                                             history, and for points the skeleton with its points

Outputs (tests/data/sot/prompts-expected/):
  <chat template>/<case>.txt    the rendered prompt, pre-fill included, byte for byte
  <chat template>/<case>.error  "<ExceptionType>: <message>" when Jinja2 raises

The rules rendered here are those of runtime/sot/sot_prompts.h: the four placeholders are
substituted in one pass; the SoT user turn follows the history; the chat template renders
with add_generation_prompt; the pre-fill is appended. Jinja2 is set up by
tools/chat/render_expected.py.
"""

import argparse
import json
import os
import re
import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in tools/chat
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chat"))
import render_expected  # noqa: E402  (the shared Jinja2 environment and template loader)

ROOT = render_expected.ROOT
CASES = os.path.join(ROOT, "tests", "data", "sot", "prompt-cases.json")
EXPECTED = os.path.join(ROOT, "tests", "data", "sot", "prompts-expected")

PLACEHOLDER = re.compile(r"\{(question|skeleton|index|point)\}")


def substitute(template, **values):
    """One pass: a substituted value is never scanned for placeholders again."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_plain(messages):
    """The layout tern uses for a model without a chat template."""
    labels = {"user": "User: ", "assistant": "Assistant: "}
    out = []
    for m in messages:
        if m["role"] == "system":
            out.append(m["content"] + "\n\n")
        else:
            out.append(labels[m["role"]] + m["content"] + "\n")
    return "output", "".join(out) + "Assistant:"


def render_turn(env, chat, history, user_text, prefill):
    messages = list(history) + [{"role": "user", "content": user_text}]
    if chat is None:
        kind, text = render_plain(messages)
    else:
        source, bos_token, eos_token = chat
        conversation = {"messages": messages, "add_generation_prompt": True}
        variables = render_expected.conversation_variables(conversation, bos_token, eos_token)
        kind, text = render_expected.render(env, source, variables)
    return kind, text + prefill if kind == "output" else text


def render_case(env, chat, templates, case):
    t = templates[case.get("templates", "default")]
    question = case["question"]
    history = case.get("history", [])
    if case["kind"] == "skeleton":
        return render_turn(env, chat, history, substitute(t["skeleton_user"], question=question),
                           t["skeleton_prefill"])
    if case["kind"] == "point":
        skeleton = "\n".join(f"{index}. {text}" for index, text in case["points"])
        text = next(text for index, text in case["points"] if index == case["point"])
        index = str(case["point"])
        user = substitute(t["point_user"], question=question, skeleton=skeleton, index=index)
        return render_turn(env, chat, history, user, substitute(t["point_prefill"], index=index, point=text))
    if case["kind"] == "router":
        return render_turn(env, chat, [], substitute(t["router_user"], question=question), "")
    raise ValueError(f"unknown case kind {case['kind']!r}")


def chat_templates(cases):
    """(name, (source, bos, eos) or None) for every chat template the cases are rendered with."""
    with open(os.path.join(render_expected.DATA, "templates.json"), encoding="utf-8") as f:
        entries = json.load(f) + cases["chat_templates"]
    for entry in entries:
        plain = "path" not in entry and "model_dir" not in entry
        yield entry["name"], None if plain else render_expected.load_template(entry)


def expected_files(env):
    with open(CASES, encoding="utf-8") as f:
        cases = json.load(f)
    files = {}
    for name, chat in chat_templates(cases):
        for case in cases["cases"]:
            kind, text = render_case(env, chat, cases["templates"], case)
            suffix = ".txt" if kind == "output" else ".error"
            files[os.path.join(name, case["name"] + suffix)] = text
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    files = expected_files(render_expected.make_environment())
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
    for directory, _, names in os.walk(EXPECTED):
        for name in names:
            relative = os.path.relpath(os.path.join(directory, name), EXPECTED)
            if relative not in files:
                stale.append(relative + " (no longer produced)")
                if not args.check:
                    os.remove(os.path.join(directory, name))
    print(f"jinja2 {render_expected.jinja2.__version__}: {len(files)} golden files, {len(stale)} "
          f"{'differ' if args.check else 'written or removed'}")
    for relative in stale:
        print("  " + relative)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
