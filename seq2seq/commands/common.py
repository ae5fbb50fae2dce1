"""What the thin entry points share: logging and progress on standard error, one-line errors, CPU threads."""

from __future__ import annotations

import atexit
import difflib
import errno
import gc
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import wraps
from pathlib import Path
from typing import Any, TextIO

import hydra
from hydra.core.utils import JobReturn
from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
)
from tqdm import tqdm

from seq2seq.data.cache import atomic_write, mount_point
from seq2seq.errors import Interrupted, PathError, SettingsError, UserError
from seq2seq.resources import CONF_DIR, check_group_options, register_recipes
from seq2seq.settings import CommandSettings, check_command
from seq2seq.settings.presets import register_schemas

SIGPIPE_EXIT_STATUS = 128 + signal.SIGPIPE  # what a shell reports for a tool its closed pipe stopped
# the user's mistakes: ours, a path that does not exist, a required key (???) not given, an interpolation (${...})
# that cannot be resolved, a training that diverged
USER_ERRORS = (UserError, FileNotFoundError, MissingMandatoryValue, InterpolationResolutionError, FloatingPointError)
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
        import torch  # here, not above: train's setting mistakes are reported before torch has loaded

        torch.set_num_threads(threads)


# what a file system answers to an output it will not take (a full disk is the cache's CacheError)
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG,
              errno.ELOOP)  # fmt: skip


@contextmanager
def writing(key: str, path: Any) -> Iterator[None]:
    """An output the file system refuses (no permission, read-only, a file or directory in the way, a full disk) as
    one line."""
    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC:
            where = mount_point(Path(path).absolute().parent)
            raise PathError(f"no space left on {where} writing {key}={path}; free some space there") from error
        if error.errno not in UNWRITABLE:
            raise
        raise PathError(f"{key}={path}: cannot write there ({error.strerror}); give another place") from error


def write_whole(output: Path, write: Callable[[TextIO], int]) -> int:
    """``write(sink)`` (returning a count) into ``output`` through a temporary file renamed at the end: never half a
    file at ``output``. A link is written through (its target is replaced), and a file replaced keeps its permissions.
    """
    if output.exists() and not output.is_file():  # a device or a pipe (/dev/null, a FIFO, /dev/stdout): written
        with writing("output", output), output.open("w", encoding="utf-8") as sink:  # to, never replaced by a file
            return write(sink)
    count = 0
    if output.is_symlink():
        with writing("output", output), suppress(FileNotFoundError):  # a dangling link is written through
            output.stat()  # a loop of links: ELOOP, one line
    target = output.resolve() if output.is_symlink() else output
    mode = target.stat().st_mode & 0o7777 if target.is_file() else None

    def write_partial(partial: Path) -> None:
        nonlocal count
        if mode is not None:
            partial.chmod(mode)
        with partial.open("w", encoding="utf-8") as sink:
            count = write(sink)

    with writing("output", output):
        atomic_write(target, write_partial)
    return count


def start_decoding_command(cfg: Any, settings: type[CommandSettings]) -> None:
    """What every command that decodes does first: logs on standard error, SIGTERM as Ctrl-C, and its whole config
    checked by its ``settings`` class, before any model loads."""
    log_to_stderr()
    stop_on_sigterm()
    check_command(settings, cfg)


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def stop_on_sigterm() -> None:
    """Make SIGTERM interrupt as Ctrl-C does, so that the same ``finally`` clauses remove what is half written."""
    signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """While training, SIGTERM (a scheduler's or ``kill``'s polite stop) and SIGINT both mean Ctrl-C.

    SIGINT is set too because a shell starts background jobs with it ignored, which Python would inherit.
    """
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


HELP_FLAGS = {"--help", "-h"}


def command(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[..., Any]]:
    """A command's entry point: Hydra composes ``conf/CONFIG_NAME.yaml`` (the settings' schemas and the recipes
    registered when the command starts, not on import), the command's mistakes are one line (``one_line_errors``),
    and ``--help`` into a closed pipe ends quietly. A help template that shows none of Hydra's ``$`` fields is
    printed as it is: Hydra's ``--help`` lists every config group first, whether shown or not (about 2 s)."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[..., Any]:
        hydra_entry = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(
            one_line_errors(refusals_inside_are_bugs(task))
        )

        @wraps(task)
        def main(*args: Any, **kwargs: Any) -> Any:
            try:
                try:
                    if not args and only_help_asked(sys.argv[1:]) and (template := plain_help(config_name)):
                        print(template)
                        sys.exit(0)
                    register_schemas()
                    register_recipes()
                    if not args:  # a command line, not a composed config
                        one_line_errors(check_group_options)(sys.argv[1:])
                        exit_without_a_last_collection()

                    def compose_and_run() -> Any:
                        with hydra_refusals_as_settings_errors():
                            return hydra_entry(*args, **kwargs)

                    return one_line_errors(compose_and_run)()
                finally:  # the help (Hydra's too) reaches a pipe here, not at exit, where a closed one is a traceback
                    sys.stdout.flush()
            except BrokenPipeError:  # the help, printed outside the command's own handling (one_line_errors)
                exit_for_closed_pipe()

        return main

    return decorate


def exit_without_a_last_collection() -> None:
    """At exit, Python's last garbage collections walk every object torch and the model made: 0.8 of a command's
    last second on a 2-core machine. Frozen first (``gc.freeze``), they are left to the process's end: nothing here
    waits for a collection to be written (files are closed where they are written)."""
    atexit.unregister(gc.freeze)  # registered once, however many commands a process runs
    atexit.register(gc.freeze)


HYDRA_REFUSALS = (ConfigCompositionException, OverrideParseException)
OURS_TO_SAY = (UserError, MissingMandatoryValue, InterpolationResolutionError)  # ``user_message`` words them
FULL_ERROR = "HYDRA_FULL_ERROR"  # Hydra's switch: raise what it refuses instead of printing it, several lines long


@contextmanager
def hydra_refusals_as_settings_errors() -> Iterator[None]:
    """An override Hydra refuses (a key that is no setting, a value of the wrong type, a grammar mistake) as a
    ``SettingsError`` naming it and the fix, one line as the command's own refusals are; Hydra's is 4 to 7 lines,
    and for an unknown key it advises ``+KEY=VALUE``, which the settings then refuse. ``HYDRA_FULL_ERROR=1`` or
    ``SEQ2SEQ_DEBUG=1``: an exception with its traceback."""
    users = os.environ.get(FULL_ERROR)
    os.environ[FULL_ERROR] = "1"  # Hydra raises what it refuses, here; a bug in the command keeps its traceback
    try:
        yield
    except HYDRA_REFUSALS as refused:
        if users == "1":
            raise
        raise SettingsError(hydra_refusal(refused)) from refused  # one line, as ``one_line_errors`` prints it
    except Exception as error:  # Hydra tripping over an override it does not refuse as such, or making a directory
        if users == "1" or raised_running_the_command(error) or isinstance(error, OURS_TO_SAY):
            raise
        raise SettingsError(before_the_command(error)) from error
    finally:
        if users is None:
            del os.environ[FULL_ERROR]
        else:
            os.environ[FULL_ERROR] = users


def before_the_command(error: Exception) -> str:
    """What failed while Hydra composed the command line or made the run's directory, before the command ran."""
    if isinstance(error, OSError) and error.filename:
        return (f"{error.filename}: {error.strerror}; Hydra makes the run's directory there, from paths.runs_dir and "
                "name (or hydra.run.dir, hydra.sweep.dir): give ones it can make")  # fmt: skip
    command_line = " ".join(sys.argv[1:])
    return f"Hydra could not compose the command line ({command_line}): {described(error)}; check it"


def described(error: BaseException) -> str:
    """An exception Hydra or OmegaConf raised that is none of their refusals, in one line: its type and text, and its
    cause's (Hydra's "Unable to configure handler 'file'" says why only there)."""
    reasons = [f"{type(error).__name__}: {error}"]
    if error.__cause__ is not None:
        reasons.append(f"{type(error.__cause__).__name__}: {error.__cause__}")
    return one_line("; ".join(reasons))


PACKAGE = os.path.dirname(os.path.dirname(__file__)) + os.sep  # seq2seq/, as code objects name their files
RERAISED_RUN = JobReturn.return_value.fget.__code__  # where Hydra re-raises a sweep's run launched elsewhere


def raised_running_the_command(error: BaseException | None) -> bool:
    """Whether ``error``, or what caused it, rose from seq2seq's code (the command, a callback Hydra makes, a
    resolver) other than this file's wrappers around Hydra, or from a sweep's run: a bug, not the command line."""
    while error is not None:
        for frame, _ in traceback.walk_tb(error.__traceback__):
            code = frame.f_code
            if code is RERAISED_RUN or (code.co_filename.startswith(PACKAGE) and code.co_filename != __file__):
                return True
        error = error.__cause__ or error.__context__
    return False


def refusals_inside_are_bugs(task: Callable[..., Any]) -> Callable[..., Any]:
    """What Hydra refuses while composing the command line's config is the user's (one line); refused inside the
    command, where it composes a config of its own, it is the command's bug, and keeps its traceback."""

    @wraps(task)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except HYDRA_REFUSALS as refused:
            raise RuntimeError(f"the command composed a config Hydra refused: {refused}") from refused

    return run


def hydra_refusal(refused: ConfigCompositionException | OverrideParseException) -> str:
    """Hydra's refusal of an override, in one line."""
    if isinstance(refused, OverrideParseException):
        return f"{refused.override}: {one_line(refused.message)} (the grammar: {GRAMMAR})"
    cause = refused.__cause__
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.parent_node is not None:  # no such key
        parent = cause.parent_node._get_full_key(None)
        unknown = ".".join(cause.full_key.split(".")[: parent.count(".") + 2 if parent else 1])
        keys = [key for key in cause.parent_node if parent or key != "hydra"]
        if not keys:
            return f"{unknown} is not a setting: {parent} holds no keys"
        guess = difflib.get_close_matches(unknown.rsplit(".", 1)[-1], keys, n=1)
        hint = f" (did you mean {parent + '.' if parent else ''}{guess[0]}?)" if guess else ""
        return f"{unknown} is not a setting; use one of {', '.join(keys)}{hint}{ADDED.get(parent, '')}"
    return one_line(str(refused) + (f": {cause.msg}" if cause is not None and hasattr(cause, "msg") else ""))


# the groups that take keys beyond their file's, added as +GROUP.KEY=VALUE
ADDED = {"trainer": "; lightning.Trainer's other arguments are added as +trainer.NAME=VALUE"}
GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
DETAILS = ("full_key:", "object_type=", "reference_type=", "See https://hydra.cc")  # OmegaConf's and Hydra's


def one_line(message: str) -> str:
    """Hydra's or OmegaConf's message in one line, without their detail lines (where in the config, a link)."""
    lines = [line.strip().replace("\\'", "'") for line in message.splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith(DETAILS))


def only_help_asked(arguments: list[str]) -> bool:
    """``--help`` with nothing but overrides: Hydra's other flags (``--config-name``, ``--cfg``, ...) may change
    what it prints, so they keep Hydra's own handling."""
    return bool(HELP_FLAGS & set(arguments)) and all(arg in HELP_FLAGS or not arg.startswith("-") for arg in arguments)


def plain_help(config_name: str) -> str | None:
    """The command's help template when Hydra would print it unchanged (it names none of Hydra's ``$`` fields)."""
    config = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR, f"{config_name}.yaml")))  # as written, unresolved
    template = config.get("hydra", {}).get("help", {}).get("template")
    return None if template is None or "$" in template else template


def one_line_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Report a user's mistake (``USER_ERRORS``) as one line on standard error and exit 1, instead of a traceback;
    anything else is a bug, and keeps its traceback. ``SEQ2SEQ_DEBUG=1`` keeps the user's mistakes' too.

    A reader that stops early (``| head``) ends the program quietly, as it ends standard Unix tools; Ctrl-C (or
    SIGTERM, after ``stop_on_sigterm``) is one line and the shell's status for that signal.
    """

    @wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as error:
            if os.environ.get(DEBUG) == "1":
                raise
            print(f"error: {user_message(error)}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt as interrupted:
            signum = interrupted.signum if isinstance(interrupted, Interrupted) else signal.SIGINT
            print(f"error: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
            sys.exit(128 + signum)
        except BrokenPipeError:
            exit_for_closed_pipe()

    return wrapper


def user_message(error: BaseException) -> str:
    """One of ``USER_ERRORS`` in one line: OmegaConf's messages are three lines, two of them its internals."""
    if isinstance(error, MissingMandatoryValue):
        return f"{error.full_key} is required: give {error.full_key}=... (see --help)"
    if isinstance(error, InterpolationResolutionError):
        return f"{error.full_key}: {one_line(str(error))}" if error.full_key else one_line(str(error))
    return str(error)


def exit_for_closed_pipe() -> None:
    """End quietly with a shell's status for SIGPIPE; what is still buffered for the closed pipe must not fail
    again, with a traceback, at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(SIGPIPE_EXIT_STATUS)
