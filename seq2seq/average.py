"""``python -m seq2seq.average``: see ``seq2seq.commands.average``."""

from seq2seq.commands.average import main

if __name__ == "__main__":
    main()
