"""Mistakes a user can fix, as exceptions whose message names the input at fault and the fix.

The entry points print them as one line and exit 1 (``seq2seq/cli.py``), instead of a traceback.
"""


class UserError(RuntimeError):
    """Something the user gave (a file, a setting, a machine's state) that seq2seq cannot use as it is."""


class CorpusError(UserError):
    """A corpus that cannot be found, read or trusted."""


class CacheError(UserError):
    """A cache file that cannot be written or trusted."""


class CheckpointError(UserError):
    """A checkpoint that cannot be used."""


class SettingError(UserError):
    """A config key whose value, or whose combination with another key's, seq2seq cannot use."""


class FileError(UserError):
    """A file or directory given for input or output that cannot be used as asked."""
