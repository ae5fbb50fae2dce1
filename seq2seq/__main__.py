"""``python -m seq2seq``: the commands, each with its one-line purpose (``--help`` on any of them says more)."""

COMMANDS = {
    "train": "prepare the data, train, keep the best checkpoint, score it on the test split",
    "evaluate": "BLEU and chrF (sacrebleu) of a checkpoint on its test or valid split, or on a file",
    "translate": "translate standard input or a file, one output line per input line",
    "probe": "show which of the GRU's returns holds the true final states, on real sentences",
    "compare": "one table and one plot from every run of a sweep",
    "bench": "decoding speed of a checkpoint, greedy and beam, batched and one sentence at a time",
    "export": "a checkpoint as a directory that loads without pickle: safetensors, JSON, sentencepiece",
    "average": "the mean of a run's last N checkpoints (or of given ones), as an exported model",
    "serve": "an HTTP translation server: LibreTranslate's API, n-best and attention, a page to try it",
}


def main() -> None:
    width = max(map(len, COMMANDS))
    print("usage: python -m seq2seq.COMMAND [key=value ...]   (or seq2seq-COMMAND; --help on any command)\n")
    for name, purpose in COMMANDS.items():
        print(f"  {name:{width}s}  {purpose}")


if __name__ == "__main__":
    main()
