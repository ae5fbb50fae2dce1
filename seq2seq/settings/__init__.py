"""Every config key's one home: a frozen dataclass per config group (its types, its rules, the rules between its
keys) and per command (its own top-level keys, ``COMMAND_SETTINGS``); ``conf/*.yaml`` holds the values. Settings
know nothing of the network: it imports them, never the reverse.
"""

from seq2seq.settings.commands import (
    COMMAND_SETTINGS,
    AverageSettings,
    BenchSettings,
    CompareSettings,
    EvaluateSettings,
    ExportSettings,
    ProbeSettings,
    ScoreSettings,
    TranslateSettings,
)
from seq2seq.settings.data import DataSettings, FilesSettings, TatoebaSettings, check_data
from seq2seq.settings.decode import STRATEGIES, DecodeSettings
from seq2seq.settings.keys import PRECISIONS, QUANTIZE, SPLIT
from seq2seq.settings.model import (
    BRIDGES,
    CELLS,
    KINDS,
    MODES,
    DecoderSettings,
    EncoderSettings,
    ModelSettings,
    decoder_hidden_size,
)
from seq2seq.settings.rules import (
    CommandSettings,
    Rule,
    Settings,
    check_command,
    check_keys,
    integer,
    read,
    with_defaults,
)
from seq2seq.settings.serve import Limits, ServeSettings
from seq2seq.settings.train import OptimSettings, PathsSettings, TrainerSettings, TrainingSettings

__all__ = [
    "BRIDGES",
    "CELLS",
    "COMMAND_SETTINGS",
    "KINDS",
    "MODES",
    "PRECISIONS",
    "QUANTIZE",
    "SPLIT",
    "STRATEGIES",
    "AverageSettings",
    "BenchSettings",
    "CommandSettings",
    "CompareSettings",
    "DataSettings",
    "DecodeSettings",
    "DecoderSettings",
    "EncoderSettings",
    "EvaluateSettings",
    "ExportSettings",
    "FilesSettings",
    "Limits",
    "ModelSettings",
    "OptimSettings",
    "PathsSettings",
    "ProbeSettings",
    "Rule",
    "ScoreSettings",
    "ServeSettings",
    "Settings",
    "TatoebaSettings",
    "TrainerSettings",
    "TrainingSettings",
    "TranslateSettings",
    "check_command",
    "check_data",
    "check_keys",
    "decoder_hidden_size",
    "integer",
    "read",
    "with_defaults",
]
