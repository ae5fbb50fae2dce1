"""``python -m seq2seq.serve``: see ``seq2seq.commands.serve``."""

from seq2seq.commands.serve import main

if __name__ == "__main__":
    main()
