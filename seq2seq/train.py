"""``python -m seq2seq.train``: see ``seq2seq.commands.train``."""

from seq2seq.commands.train import main

if __name__ == "__main__":
    main()
