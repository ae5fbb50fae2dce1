"""Every config key's one home: a frozen dataclass per config group (its types, its rules, the rules between its
keys); ``conf/*.yaml`` holds the values. Settings know nothing of the network: it imports them, never the reverse.
"""

from seq2seq.settings.data import DataSettings, FilesSettings, TatoebaSettings, check_data
from seq2seq.settings.decode import STRATEGIES, DecodeSettings
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
from seq2seq.settings.rules import Rule, Settings, check_keys, integer, read, with_defaults
from seq2seq.settings.tools import PRECISIONS, ToolSettings, check_tool_settings
from seq2seq.settings.train import (
    OptimSettings,
    PathsSettings,
    TrainerSettings,
    TrainingSettings,
    check_train_config,
)

__all__ = [
    "BRIDGES",
    "CELLS",
    "KINDS",
    "MODES",
    "PRECISIONS",
    "STRATEGIES",
    "DataSettings",
    "DecodeSettings",
    "DecoderSettings",
    "EncoderSettings",
    "FilesSettings",
    "ModelSettings",
    "OptimSettings",
    "PathsSettings",
    "Rule",
    "Settings",
    "TatoebaSettings",
    "ToolSettings",
    "TrainerSettings",
    "TrainingSettings",
    "check_data",
    "check_keys",
    "check_tool_settings",
    "check_train_config",
    "decoder_hidden_size",
    "integer",
    "read",
    "with_defaults",
]
