"""``python -m seq2seq.serve checkpoint=PATH``: the HTTP translation server (``seq2seq.serving``) on uvicorn."""

from __future__ import annotations

import logging
import queue
import signal
from collections.abc import Callable
from logging.handlers import QueueHandler, QueueListener
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import load_models
from seq2seq.commands.common import command, start_decoding_command, use_threads
from seq2seq.core.translator import Translator, pick_device
from seq2seq.errors import UserError
from seq2seq.settings import ServeSettings

log = logging.getLogger(__name__)


def server_parts() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``serving.create_app`` and ``uvicorn.run``: the serve extra, or one line saying how to install it."""
    try:
        import uvicorn

        from seq2seq.serving import create_app
    except ImportError as error:
        raise UserError(f'serving needs {error.name}, not installed here: pip install -e ".[serve]"') from error
    return create_app, uvicorn.run


def log_from_a_thread() -> QueueListener:
    """The log's handlers write from a thread of their own: the event loop only queues each line, so a slow
    standard error (a pipe nobody reads for a while) never stalls every request."""
    root = logging.getLogger()
    listener = QueueListener(queue.SimpleQueue(), *root.handlers, respect_handler_level=True)
    root.handlers = [QueueHandler(listener.queue)]
    listener.start()
    return listener


def drained(signum: int, frame: Any) -> None:
    """uvicorn raises the signal that stopped it again once every request in flight is answered, or after
    ``limits.drain_s`` has cut off those left (its own error line says how many): then the server is done."""
    log.info("%s: drained; exiting", signal.Signals(signum).name)


@command("serve")
def main(cfg: DictConfig) -> None:
    start_decoding_command(cfg, ServeSettings)  # SIGTERM as Ctrl-C while the model loads; uvicorn drains from then on
    create_app, run = server_parts()
    use_threads(cfg.threads)
    model = load_models(cfg.checkpoint)
    translator = Translator(model, cfg.decode, pick_device(cfg.device, cfg.quantize), cfg.quantize)
    app = create_app(model, translator, OmegaConf.to_object(cfg.limits))  # its schema: a Limits
    signal.signal(signal.SIGTERM, drained)
    listener = log_from_a_thread()
    try:
        run(app, host=cfg.host, port=cfg.port, log_config=None, access_log=False,
            timeout_graceful_shutdown=cfg.limits.drain_s)  # fmt: skip
    finally:
        listener.stop()  # every line queued is written


if __name__ == "__main__":
    main()
