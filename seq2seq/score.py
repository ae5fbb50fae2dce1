"""``python -m seq2seq.score``: see ``seq2seq.commands.score``."""

from seq2seq.commands.score import main

if __name__ == "__main__":
    main()
