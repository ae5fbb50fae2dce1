"""``python -m seq2seq.compare``: see ``seq2seq.commands.compare``."""

from seq2seq.commands.compare import main

if __name__ == "__main__":
    main()
