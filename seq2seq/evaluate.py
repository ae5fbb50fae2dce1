"""``python -m seq2seq.evaluate``: see ``seq2seq.commands.evaluate``."""

from seq2seq.commands.evaluate import main

if __name__ == "__main__":
    main()
