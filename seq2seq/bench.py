"""``python -m seq2seq.bench``: see ``seq2seq.commands.bench``."""

from seq2seq.commands.bench import main

if __name__ == "__main__":
    main()
