"""``python -m seq2seq.export checkpoint=PATH output=DIR``: a model directory that loads without pickle.

The weights as safetensors, the config as JSON, both sentencepiece models as files; ``translate``, ``evaluate``,
``probe``, ``bench`` and ``Translator.load`` take the directory wherever they take a ``.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from seq2seq.checkpoint import load_checkpoint, write_export
from seq2seq.commands.common import command, log_to_stderr, stop_on_sigterm, writing
from seq2seq.settings import ExportSettings, check_command


@command("export")
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    stop_on_sigterm()
    check_command(ExportSettings, cfg)
    trained = load_checkpoint(cfg.checkpoint)
    with writing("output", cfg.output):
        write_export(trained, Path(cfg.output))
    print(f"exported {cfg.checkpoint} to {cfg.output}")


if __name__ == "__main__":
    main()
