"""``python -m seq2seq.export``: see ``seq2seq.commands.export``."""

from seq2seq.commands.export import main

if __name__ == "__main__":
    main()
