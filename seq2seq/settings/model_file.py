"""A model file's config is untrusted input: read as plain data that cannot steer this machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seq2seq.errors import CheckpointError, SettingsError
from seq2seq.settings.data import FilesSettings, TatoebaSettings
from seq2seq.settings.rules import check_keys

CORPUS_SOURCES = ("tatoeba", "files")  # conf/data/SOURCE.yaml: the recipes a model's data.source may name
# where a model's corpus is found: this machine's settings say, never a model file (a URL, a mirror, a cache)
LOCATION_KEYS = ("url", "mirror", "cache_dir")
READ_DATA_KEYS = ("max_tokens", "src_lang", "tgt_lang", "batch_tokens")  # what the tools read of a model's data
READ_FILES_KEYS = ("src_column", "tgt_column")  # and of a model of your own files (evaluate reads its columns)


def interpolations(value: Any, key: str = "") -> Iterator[str]:
    """The keys under ``value`` whose strings OmegaConf would interpolate (``${...}``)."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from interpolations(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from interpolations(item, f"{key}[{index}]")
    elif isinstance(value, str) and "${" in value:
        yield key


def plain_config(config: Any, path: Path | str) -> dict[str, Any]:
    """A model's config as data it cannot steer this machine with: nothing to interpolate (an environment
    variable, a resolver), a known corpus recipe, and no say in where its corpus is fetched or cached from:
    ``LOCATION_KEYS`` are dropped, so this machine's settings and defaults fill them in.
    """
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise CheckpointError(f"{path}: its config has no data settings; use a model that seq2seq wrote")
    if found := list(interpolations(config)):
        raise CheckpointError(
            f"{path}: its config asks to interpolate ${{...}} at {', '.join(found)}; refused: a model's config "
            "is data (seq2seq never writes one)"
        )
    data = config["data"]
    source = data.get("source", "tatoeba")
    if source not in CORPUS_SOURCES:
        raise CheckpointError(f"{path}: data.source={data['source']!r} is not one of {CORPUS_SOURCES}; refused")
    try:  # the data keys it has, by the rules a user's are read by: the tools size and cut with them
        check_keys(TatoebaSettings if source == "tatoeba" else FilesSettings, {"pair": "fra-eng", **data}, "data")
    except SettingsError as error:
        raise CheckpointError(f"{path}: {error}; refused") from error
    return {**config, "data": {key: value for key, value in data.items() if key not in LOCATION_KEYS}}
