"""``python -m seq2seq.probe``: see ``seq2seq.commands.probe``."""

from seq2seq.commands.probe import main

if __name__ == "__main__":
    main()
