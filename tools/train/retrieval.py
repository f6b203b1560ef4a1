"""Synthetic long-context line retrieval in the style of LongChat's LongEval "lines" task, which the
MoA (Mixture of Sparse Attention) paper uses as its retrieval test:

    line lovely-dog: REGISTER_CONTENT is <28840>
    ...
    Now the record is over. Tell me what is the REGISTER_CONTENT in line lovely-dog? I need the number.
    The REGISTER_CONTENT in line lovely-dog is <28840>.

Shared by tools/train/train_llm.py (training sequences) and tools/eval/eval_llm.py (the test), so
both use the same format. Keys are adjective-noun pairs drawn from the lists below (distinct within
a record); values are uniform in [1, 50000), as in LongEval. No tokenizer or torch needed here.
"""
import random

ADJECTIVES = """able acid agile alert amber ancient angry arctic ashen autumn bald bitter black blazing bold
brave breezy bright brisk broad bronze busy calm candid careful cheerful chilly clever cloudy
coastal cosmic crimson crisp curious daring dark dusty eager early electric elegant empty fancy
fierce fiery flat fluffy foggy fragile frozen fuzzy gentle giant gilded glad glossy golden grand
grassy green happy hasty hidden hollow honest humble icy idle jolly keen kind large lazy lively
lonely loud lovely lucky lunar magic mellow merry mighty misty modern muddy narrow nimble noble
odd olive orange pale patient plain polite proud purple quick quiet rapid rare red rich rocky
rosy royal rusty sandy scarlet secret shiny silent silver simple sleepy slow smooth snowy soft
solar solid sour spare stark steady stormy sunny swift tall tame tidy tiny tough tranquil vast
velvet violet vivid warm wary wild windy wise witty wooden young zealous""".split()

NOUNS = """acorn anchor apple arrow badger bakery banjo barrel basket beacon beetle bell bison blanket
boat bottle bridge brook bucket buffalo cabin camel candle canyon carpet castle cedar cello
chair cherry cliff clock cloud comet copper coral cottage crane crystal dagger desert dolphin
donkey dragon drum eagle engine falcon feather fern ferry fiddle forest fountain fox garden
garnet glacier goat grape guitar hammer harbor hawk helmet heron hill horse island ivory jacket
jaguar kettle kite ladder lagoon lantern lemon lily lion lizard magnet maple marble meadow
mirror monkey moose mountain needle nest oak ocean otter owl paddle panda parrot pebble pepper
piano pigeon pillow pine planet pony puzzle quartz rabbit radio raven river robin rocket saddle
salmon scarf shell ship shovel spider spoon squirrel star stone storm tiger tower tractor
trumpet tulip turtle valley violin wagon walnut whale willow window wolf zebra""".split()

PREAMBLE = (
    "Below is a record of lines I want you to remember. Each line begins with 'line <line index>' and "
    "contains a '<REGISTER_CONTENT>' at the end of the line as a numerical value. For each line index, "
    "memorize its corresponding <REGISTER_CONTENT>. At the end of the record, I will ask you to retrieve "
    "the corresponding <REGISTER_CONTENT> of a certain line index. Now the record start:\n\n"
)


def line_text(key, value):
    return f"line {key}: REGISTER_CONTENT is <{value}>\n"


def first_question(key):
    return f"Now the record is over. Tell me what is the REGISTER_CONTENT in line {key}? I need the number.\n"


def next_question(key):
    return f"Tell me what is the REGISTER_CONTENT in line {key}? I need the number.\n"


def answer_text(key, value):
    return f"The REGISTER_CONTENT in line {key} is <{value}>.\n"


def make_record(rng: random.Random, n_lines: int):
    keys = set()
    while len(keys) < n_lines:
        keys.add(f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}")
    keys = sorted(keys)
    rng.shuffle(keys)
    return [(k, rng.randrange(1, 50000)) for k in keys]


def build(record, queries, inner=()):
    """Returns (text, answer_spans, value_spans): character spans of each answer sentence (its
    final newline included) and of each answer's '<value>' part ('<' excluded, '>' included).
    `queries` are asked after the record ("Now the record is over. ..."); `inner` holds
    (line_index, key) pairs asked inside the record, right after line `line_index`, about a key of
    that line or an earlier one (denser training signal; the evaluation asks at the end only)."""
    lookup = dict(record)
    after = {}
    for i, key in inner:
        after.setdefault(i, []).append(key)
    text = PREAMBLE
    answers, values = [], []

    def ask(question, key):
        nonlocal text
        text += question
        a = answer_text(key, lookup[key])
        start = len(text)
        text += a
        answers.append((start, start + len(a)))
        vstart = start + a.index("<") + 1
        values.append((vstart, vstart + len(str(lookup[key])) + 1))

    for i, (k, v) in enumerate(record):
        text += line_text(k, v)
        for key in after.get(i, ()):
            ask(next_question(key), key)
    for i, key in enumerate(queries):
        ask(first_question(key) if i == 0 else next_question(key), key)
    return text, answers, values


def eval_case(rng: random.Random, length: int, n_lines: int, encode):
    """One evaluation case: a record of about `n_lines` lines, one question about a uniformly chosen
    line, and its answer sentence (trailing newline included), trimmed line by line until
    `encode(text)` (token ids, no BOS) plus a BOS fits in `length` tokens. Returns
    (record, needle_index, text, answer_span, value_span, encoding)."""
    rec = make_record(rng, max(2, n_lines))
    qi = rng.randrange(len(rec))
    while True:
        text, answers, values = build(rec, [rec[qi][0]])
        enc = encode(text)
        if len(enc.ids) + 1 <= length or len(rec) <= 2:
            return rec, qi, text, answers[0], values[0], enc
        # Drop one line that is not the needle.
        drop = len(rec) - 1 if qi != len(rec) - 1 else len(rec) - 2
        rec = rec[:drop] + rec[drop + 1:]
        if qi > drop:
            qi -= 1
