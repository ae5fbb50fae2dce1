"""``serve``'s own keys: where it listens, and what one request, and all waiting ones, may hold."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from seq2seq.settings.rules import TEXT, Rule, Settings, check_keys, integer, is_int, number, read, setting


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


@dataclass(frozen=True)
class ServeSettings(Settings):
    host: str = setting(TEXT, doc="127.0.0.1: this machine only; 0.0.0.0: every network")
    port: int = setting(
        Rule("an integer from 0 to 65535 (0: any free port)", lambda v: is_int(v) and 0 <= v <= 65535),
        doc="LibreTranslate's is 5000",
    )


def check_serve(cfg: DictConfig) -> Limits:
    """``serve``'s own keys (the decode and tool keys are checked as the other commands check them)."""
    check_keys(ServeSettings, cfg)
    return read(Limits, cfg.limits, "limits")
