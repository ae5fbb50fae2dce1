"""``python -m seq2seq.translate``: see ``seq2seq.commands.translate``."""

from seq2seq.commands.translate import main

if __name__ == "__main__":
    main()
