"""Mistakes a user can fix, as exceptions whose message names the input at fault and the fix.

The entry points print them as one line and exit 1 (``seq2seq/commands/common.py``), instead of a traceback.
"""


class UserError(RuntimeError):
    """Something the user gave (a file, a setting, a machine's state) that seq2seq cannot use as it is."""


class CorpusError(UserError):
    """A corpus that cannot be found, read or trusted."""


class CacheError(UserError):
    """A cache file that cannot be written or trusted."""


class CheckpointError(UserError):
    """A checkpoint that cannot be used."""


class SettingsError(UserError):
    """A setting (``key=value``) that cannot work: against its rule or another key's (``seq2seq/settings/``), or once
    it meets the files or the data."""


class PathError(UserError):
    """An input that is not there, or an output that cannot be written or would replace one of the command's inputs."""


class DecodeError(UserError):
    """An input translating cannot take."""


class RunBusyError(UserError):
    """A run directory that another process is training into."""


class Interrupted(KeyboardInterrupt):
    """A signal that stops a command as Ctrl-C does (SIGTERM), carrying its number for the exit status."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
