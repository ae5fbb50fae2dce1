"""``seq2seq COMMAND [key=value ...]`` runs that command; ``seq2seq`` alone lists them, without loading torch."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "prepare the data, train, keep the best checkpoint, score it on the test split",
    "evaluate": "BLEU and chrF (sacrebleu) of a checkpoint on its test or valid split, or on a file",
    "translate": "translate standard input or a file, one output line per input line",
    "score": "the log-probability of given translations (source<TAB>target lines), one line per pair",
    "probe": "show which of the GRU's returns holds the true final states, on real sentences",
    "compare": "one table and one plot from every run of a sweep",
    "bench": "decoding speed of a checkpoint, greedy and beam, batched and one sentence at a time",
    "export": "a checkpoint as a directory that loads without pickle: safetensors, JSON, sentencepiece",
    "average": "the mean of a run's last N checkpoints (or of given ones), as an exported model",
    "serve": "an HTTP translation server: LibreTranslate's API, n-best and attention, a page to try it",
}


def main() -> None:
    command, *arguments = sys.argv[1:] or [None]
    if command in COMMANDS:
        sys.argv = [f"seq2seq-{command}", *arguments]  # as if seq2seq-COMMAND had been run
        importlib.import_module(f"seq2seq.{command}").main()
        return
    width = max(map(len, COMMANDS))
    usage = "usage: seq2seq COMMAND [key=value ...]   (or python -m seq2seq.COMMAND; --help on any command)\n"
    listing = "\n".join(f"  {name:{width}s}  {purpose}" for name, purpose in COMMANDS.items())
    if command in (None, "-h", "--help"):
        print(f"{usage}\n{listing}")
        return
    print(f"error: seq2seq has no command {command!r}; use one of:\n{listing}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
