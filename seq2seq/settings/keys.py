"""The keys several commands share, each written once (its rule and what it does), and the rules of paths: what
a key naming a file or a directory may hold. Whether that file exists is the command's to check, at the time it
reads it.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import ListConfig

from seq2seq.settings.rules import Key, Rule, either, integer, one_of


def path_list(value: Any) -> bool:
    """A list of paths (a Hydra list, or a Python one)."""
    return isinstance(value, (list, ListConfig)) and all(isinstance(path, str) for path in value)


PATH = Rule("a path", lambda v: isinstance(v, str))
OPTIONAL_PATH = Rule("null or a path", lambda v: v is None or isinstance(v, str))
PATHS = Rule("a list of paths", path_list)
# what a command that reads one model says of a list (the ensembles' commands take MODELS)
ONE_MODEL = "this command reads one model; ensembles ([A,B,...]) are for translate, evaluate, score, serve and bench"

# bench's precisions, each as the quantize setting that gives it (int8: the recurrent and linear layers, CPU only)
PRECISIONS = {"fp32": None, "int8": "int8"}

MODELS = Key(
    Rule(
        "a path, or a non-empty list of paths (an ensemble)",
        lambda v: isinstance(v, str) or (path_list(v) and len(v) > 0),
    ),
    "a .ckpt written by train, a training run (its best.ckpt), or an exported or averaged directory; [A,B,...]: an "
    "ensemble",
)
DEVICE = Key(
    Rule(
        "auto, cpu, cuda or cuda:N",
        lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None,
    ),
    "auto: a GPU if there is one (the CPU for int8)",
)
QUANTIZE = Key(one_of(*PRECISIONS.values()), "int8: int8 recurrent and linear layers, faster on a CPU (CPU only)")
THREADS = Key(either(one_of(None), integer(1)), "torch's CPU threads; null: torch's choice")
PROGRESS = Key(
    one_of("auto", "always", "never"), "a bar on standard error (reading a file); auto: when it is a terminal"
)
SPLIT = Key(one_of("valid", "test"), "the model's own corpus split")
OUTPUT_FILE = Key(
    OPTIONAL_PATH, "null: standard output; a file is written whole or not at all, never over an input or the model"
)
MODEL_DIRECTORY = Key(
    PATH,
    "a new directory: the weights as safetensors, config.json and both sentencepiece models (loads without pickle)",
)
