"""What the thin entry points share: logging and progress on standard error, one-line errors, CPU threads."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import torch
from omegaconf.errors import MissingMandatoryValue
from tqdm import tqdm

from seq2seq.errors import UserError
from seq2seq.settings import register_schemas

SIGPIPE_EXIT_STATUS = 128 + signal.SIGPIPE  # what a shell reports for a tool its closed pipe stopped
# the user's mistakes: ours, a path that does not exist, a required key (???) not given, a training that diverged
USER_ERRORS = (UserError, FileNotFoundError, MissingMandatoryValue, FloatingPointError)
DEBUG = "SEQ2SEQ_DEBUG"  # =1: a user's mistake too ends in its traceback


def log_to_stderr() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def progress_bar(progress: str, **bar: Any) -> tqdm:
    """A tqdm bar on standard error, never standard output (which carries results).

    ``progress=auto`` shows it only when standard error is a terminal (tqdm's ``disable=None``); ``always`` or
    ``never`` decide regardless.
    """
    disable = {"auto": None, "always": False, "never": True}[progress]
    return tqdm(file=sys.stderr, disable=disable, dynamic_ncols=True, **bar)


def use_threads(threads: int | None) -> None:
    """``threads=N``: torch's intra-op CPU threads; ``null`` leaves torch's own choice."""
    if threads is not None:
        torch.set_num_threads(threads)


def with_schemas(main: Callable[..., Any]) -> Callable[..., Any]:
    """Register the settings' schemas in Hydra's ConfigStore when the command starts, before Hydra composes its
    config (``@with_schemas`` above ``@hydra.main``), rather than as a side effect of importing the library.
    """

    @wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        register_schemas()
        return main(*args, **kwargs)

    return wrapper


def one_line_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Report a user's mistake (``USER_ERRORS``) as one line on standard error and exit 1, instead of a traceback;
    anything else is a bug, and keeps its traceback. ``SEQ2SEQ_DEBUG=1`` keeps the user's mistakes' too.

    A reader that stops early (``| head``) ends the program quietly, as it ends standard Unix tools.
    """

    @wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get(DEBUG) == "1":
                raise
            if isinstance(error, MissingMandatoryValue):  # OmegaConf's message is three lines of its internals
                error = f"{error.full_key} is required: give {error.full_key}=... (see --help)"
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)
        except BrokenPipeError:
            # what is still buffered for the closed pipe must not fail again, with a traceback, at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(SIGPIPE_EXIT_STATUS)

    return wrapper
