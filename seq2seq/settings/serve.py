"""``serve``'s own keys: where it listens, and what one request, and all waiting ones, may hold (``limits``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from seq2seq.settings.decode import DecodeSettings
from seq2seq.settings.keys import DEVICE, MODELS, QUANTIZE, THREADS
from seq2seq.settings.rules import (
    TEXT,
    CommandSettings,
    GroupCheck,
    Rule,
    Settings,
    integer,
    is_int,
    number,
    read,
    setting,
    shared,
)


@dataclass  # not frozen: as the ``limits`` group's schema, Hydra's ``limits.KEY=VALUE`` must be able to set it
class Limits(Settings):
    """The ``limits`` group (``limits.KEY=VALUE``); its defaults are the schema ``conf/serve.yaml`` starts from."""

    max_body_bytes: int = setting(integer(1), 1 << 20, doc="per request")
    max_sentences: int = setting(integer(1), 64, doc="per request")
    max_chars: int = setting(integer(1), 1000, doc="per sentence")
    max_queued: int = setting(integer(1), 1024, doc="sentences waiting for the decoder, over all requests")
    max_beam_size: int = setting(integer(1), 16, doc="per request, on the native endpoint")
    batch_wait_ms: float = setting(
        number(0),
        20.0,
        doc="once a batch of several requests is decoded, how long the decoder waits for their clients' next ones "
        "(at least a quarter of that batch's decoding, on a busy machine)",
    )
    drain_s: float = setting(
        number(0, above_low=True),
        20.0,
        doc="on SIGTERM, how long the requests in flight have to finish (under Kubernetes' 30 s grace): every "
        "connection still open then is closed, a stalled client's or a request still queued, so the server exits",
    )


@dataclass(frozen=True)
class ServeSettings(CommandSettings):
    """``conf/serve.yaml``'s own keys."""

    groups: ClassVar[Mapping[str, GroupCheck | None]] = {
        "decode": partial(read, DecodeSettings),
        "limits": partial(read, Limits),
    }

    checkpoint: str | list[str] = shared(MODELS)
    host: str = setting(TEXT, doc="127.0.0.1: this machine only; 0.0.0.0: every network")
    port: int = setting(
        Rule("an integer from 0 to 65535 (0: any free port)", lambda v: is_int(v) and 0 <= v <= 65535),
        doc="LibreTranslate's is 5000",
    )
    device: str = shared(DEVICE)
    quantize: str | None = shared(QUANTIZE)
    threads: int | None = shared(THREADS)
