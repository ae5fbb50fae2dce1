"""Every setting has one home: its settings class holds its type, its rule and the rules between keys, the YAML under
conf/ its value. Each mistake is one line naming the full key, and only the user's mistakes are shown that way.
"""

import ast
import copy
import functools
import importlib
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from seq2seq import __main__ as umbrella
from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands.common import one_line_errors, plain_help
from seq2seq.errors import SettingsError, UserError
from seq2seq.resources import CONF_DIR
from seq2seq.settings import (
    COMMAND_SETTINGS,
    DecodeSettings,
    FilesSettings,
    Limits,
    ModelSettings,
    OptimSettings,
    PathsSettings,
    Settings,
    TatoebaSettings,
    TrainerSettings,
    TrainingSettings,
    TranslateSettings,
    check_command,
    read,
    with_defaults,
)
from seq2seq.settings.presets import composed, hydra_composed
from seq2seq.training import run

CONF = Path(CONF_DIR)
INVALID = ("no such value", -1)  # every rule refuses one of these


def train_config(*overrides: str) -> DictConfig:
    return composed("train", "paths.mirror=null", *overrides)


@functools.cache
def plain_train_config(*overrides: str) -> dict:
    return OmegaConf.to_container(train_config(*overrides), resolve=True)


def untyped(*overrides: str) -> DictConfig:
    """A training config without its schemas, so that a test may set any value, as a YAML file may hold it."""
    return OmegaConf.create(plain_train_config(*overrides))


def setting_keys(settings: type[Settings], prefix: str = "") -> set[str]:
    """The full keys of a settings class: its fields, and its nested groups' fields."""
    keys = set()
    for each in fields(settings):
        nested = each.metadata.get("group")
        keys |= setting_keys(nested, f"{prefix}{each.name}.") if nested else {prefix + each.name}
    return keys


def yaml_keys(node: DictConfig, settings: type[Settings], prefix: str = "") -> set[str]:
    """The full keys of a YAML file's values, walking into the groups ``settings`` nests (a dict value is a value)."""
    groups = {each.name: each.metadata["group"] for each in fields(settings) if "group" in each.metadata}
    keys = set()
    for key in node:
        if key == "defaults":
            continue
        keys |= yaml_keys(node[key], groups[key], f"{prefix}{key}.") if key in groups else {prefix + key}
    return keys


def yaml(*names: str) -> DictConfig:
    return OmegaConf.merge(*(OmegaConf.load(CONF / name) for name in names))


@pytest.mark.parametrize(
    "settings, files",
    [
        (ModelSettings, ["model/rnn.yaml"]),
        (OptimSettings, ["optim/adamw.yaml"]),
        (TatoebaSettings, ["data/common.yaml", "data/tatoeba.yaml"]),
        (FilesSettings, ["data/common.yaml", "data/files.yaml"]),
        (PathsSettings, ["paths/default.yaml"]),
        (TrainerSettings, ["trainer/default.yaml"]),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_every_key_in_conf_is_a_field_of_its_settings_class_and_every_field_a_key(settings, files):
    assert yaml_keys(yaml(*files), settings) == setting_keys(settings)


def test_every_decode_preset_holds_exactly_the_decode_settings_and_sets_only_some_of_them():
    for preset in ("greedy", "beam"):
        assert set(train_config(f"decode={preset}").decode) == setting_keys(DecodeSettings)
        assert yaml_keys(yaml(f"decode/{preset}.yaml"), DecodeSettings) <= setting_keys(DecodeSettings)


def test_serves_limits_are_the_keys_of_its_schema():
    assert set(composed("serve").limits) == setting_keys(Limits)


COMMANDS = sorted(path.stem for path in CONF.glob("*.yaml"))  # conf/NAME.yaml: python -m seq2seq.NAME


def test_every_command_has_a_class_of_its_own_keys_and_every_class_is_a_commands():
    assert list(COMMAND_SETTINGS) == list(umbrella.COMMANDS)  # in the order seq2seq lists them
    assert sorted(COMMAND_SETTINGS) == COMMANDS


def top_level(group: str) -> str:
    """Where a composed group sits: ``decode@searches.beam`` in ``searches``, ``hydra/env`` in ``hydra``."""
    return group.split("@")[1].split(".")[0] if "@" in group else group.split("/")[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_key_of_a_command_is_a_field_of_its_class_and_every_field_a_key_and_the_rest_its_groups(command):
    """Its own keys: the composed config's top-level keys, less Hydra's and the groups Hydra composed into it."""
    cfg = composed(command, with_hydra=True)
    chosen = {top_level(group) for group, option in cfg.hydra.runtime.choices.items() if option is not None}
    settings = COMMAND_SETTINGS[command]
    assert set(cfg) - chosen == setting_keys(settings)
    assert chosen - {"hydra"} == set(settings.groups)


@pytest.mark.parametrize(
    "name", sorted({each.name for settings in COMMAND_SETTINGS.values() for each in fields(settings)})
)
def test_a_key_that_several_commands_share_is_checked_by_one_rule_never_a_copy(name):
    """Equal words, one object: a rule several commands share is written once (``keys.py``), so it cannot drift."""
    held = [each for settings in COMMAND_SETTINGS.values() for each in fields(settings) if each.name == name]
    by_words = {}
    for each in held:
        by_words.setdefault(each.metadata["rule"].allowed, set()).add(id(each.metadata["rule"]))
    assert all(len(rules) == 1 for rules in by_words.values()), by_words


def hydra_settings(command: str) -> dict:
    """What Hydra itself reads of a command's composed config (unresolved: ``${now:...}`` stays as written)."""
    hydra = composed(command, with_hydra=True).hydra
    return OmegaConf.to_container(hydra, resolve=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_composes_with_hydras_settings_from_conf_hydra_and_keeps_only_its_help(command):
    assert set(yaml(f"{command}.yaml").hydra) == {"help"}
    hydra = hydra_settings(command)
    assert hydra["help"]["template"].startswith(f"seq2seq-{command} (python -m seq2seq.{command})")
    # every command but train prints its template itself, without Hydra (test_ux has why): Hydra's text exactly
    assert plain_help(command) == (None if command == "train" else hydra["help"]["template"])
    if command == "train":  # a directory per run, with Hydra's record of its config; logs on standard error
        assert hydra["run"]["dir"] == "${paths.runs_dir}/${name}/${now:%Y-%m-%d_%H-%M-%S}_${pid:}"
        assert hydra["sweep"] == {"dir": "${paths.runs_dir}/${name}-sweep/${now:%Y-%m-%d_%H-%M-%S}_${pid:}",
                                  "subdir": "${hydra.job.num}"}  # fmt: skip
        assert (hydra["output_subdir"], hydra["job"]["chdir"]) == (".hydra", False)
        for logging in ("job_logging", "hydra_logging"):
            assert hydra[logging]["handlers"]["console"] == {
                "class": "logging.StreamHandler", "formatter": "simple", "stream": "ext://sys.stderr"
            }  # fmt: skip
    else:  # writes where it is told, nothing of Hydra's; logging is seq2seq.commands.common's, on standard error
        assert (hydra["run"]["dir"], hydra["output_subdir"]) == (".", None)
        for logging in ("job_logging", "hydra_logging"):
            console = hydra[logging].get("handlers", {}).get("console", {})
            assert hydra[logging]["root"] is None and "class" not in console


# each group of a training config as check_command(TrainingSettings, ...) reads it: where it sits, and its class
TRAINING_GROUPS = [
    ("model", ModelSettings),
    ("optim", OptimSettings),
    ("paths", PathsSettings),
    ("trainer", TrainerSettings),
    ("data", TatoebaSettings),
    ("decode", DecodeSettings),
    ("test_decode", DecodeSettings),
]


def rules(settings: type[Settings], prefix: str = "") -> dict:
    """Each full key of ``settings`` → its rule."""
    found = {}
    for each in fields(settings):
        nested = each.metadata.get("group")
        found |= rules(nested, f"{prefix}{each.name}.") if nested else {prefix + each.name: each.metadata["rule"]}
    return found


EVERY_TRAINING_RULE = {
    key: rule
    for group, settings in TRAINING_GROUPS
    for key, rule in rules(settings, f"{group}." if group else "").items()
}


def invalid(rule) -> object:
    return next(value for value in INVALID if not rule.accepts(value))


def one_line_naming(key: str, error: pytest.ExceptionInfo) -> None:
    message = str(error.value)
    assert message.startswith(f"{key}=") and "\n" not in message, message


def composition(config_name: str, overrides: list[str], compose) -> tuple:
    """What a compose gives: the config's YAML and whether it is closed to new keys, or the refusal's type and text."""
    try:
        cfg = compose(config_name, overrides)
    except Exception as refusal:
        return type(refusal), str(refusal), str(refusal.__cause__)
    return OmegaConf.to_yaml(cfg), OmegaConf.is_struct(cfg)


@pytest.mark.parametrize(
    "config_name, overrides",
    [
        ("train", ["recipe=fra-eng-small-attn", "data.vocab_size=300", "trainer.max_steps=3"]),
        ("train", ["data.vocab_size=300", "recipe=fra-eng-small"]),  # a value before the choice it lands on
        ("train", ["data=files", "data.train=a.tsv", "+trainer.detect_anomaly=true", "~data.subset"]),
        ("train", ["++trainer.max_steps=7", "optim={lr: 0.5}", "model.encoder.hidden_size=${model.embedding_dim}"]),
        ("train", ["+trainer.max_steps=7"]),  # refused: already there
        ("train", ["data.vocab_sise=300"]),  # refused: no such key
        ("train", ["data.vocab_size=many"]),  # refused: not an integer
        ("train", ["~data.no_such_key"]),  # refused: nothing to delete
        ("train", ["recipe=no-such-recipe"]),  # refused: no such option
        ("train", ["data.vocab_size=(("]),  # refused: not an override
        ("translate", ["decode=beam", "decode.beam_size=3", "checkpoint=x.ckpt"]),
        ("translate", ["decode@other=beam"]),  # refused: not a package of this config
        ("translate", ["hydra.run.dir=elsewhere", "decode.beam_size=2"]),  # Hydra's own keys: Hydra composes it all
        ("train", ["hydra={job: {name: x}}", "seed=3"]),  # Hydra's own node, whole
        ("train", ["++hydra={a: 1}"]),  # refused: no such key of Hydra's
        ("train", ["+x=${hydra.job.chdir}", "~x=False"]),  # a value read from Hydra's node
    ],
)
def test_a_composed_config_is_the_one_hydra_composes_and_a_refusal_is_hydras_own(config_name, overrides):
    by_hydra = composition(config_name, overrides, lambda name, overrides: hydra_composed(name, overrides, False))
    for _ in range(2):  # composed again from the files it chose the first time: a copy, changed by nobody
        assert composition(config_name, overrides, lambda name, overrides: composed(name, *overrides)) == by_hydra
        if isinstance(by_hydra[0], str):
            with open_dict(cfg := composed(config_name, *overrides)):
                cfg.changed_by_a_caller = True


@pytest.mark.parametrize("key", EVERY_TRAINING_RULE)
def test_each_invalid_training_setting_is_one_line_naming_its_full_key(key):
    """Driven from the settings classes' rules: a new field is tried here without a new line of test."""
    cfg = untyped()
    OmegaConf.update(cfg, key, invalid(EVERY_TRAINING_RULE[key]))
    with pytest.raises(SettingsError) as error:
        check_command(TrainingSettings, cfg)  # train() calls it first, before any data work (test_cli)
    one_line_naming(key, error)


@pytest.mark.parametrize("key", [*sorted(setting_keys(FilesSettings) - setting_keys(TatoebaSettings)), "subset"])
def test_each_invalid_setting_of_own_files_is_one_line_naming_its_full_key(key):
    cfg = untyped("data=files", "data.train=a.tsv")
    cfg.data[key] = invalid(rules(FilesSettings)[key])
    with pytest.raises(SettingsError) as error:
        check_command(TrainingSettings, cfg)
    one_line_naming(f"data.{key}", error)


# what a command's check needs besides its defaults: its required keys (???), and average's run or checkpoints
GIVEN = {
    "train": [],
    "evaluate": ["checkpoint=model.ckpt"],
    "translate": ["checkpoint=model.ckpt"],
    "score": ["checkpoint=model.ckpt"],
    "probe": [],
    "compare": ["sweep=runs/fra-eng-small-context-sweep/DATE"],
    "bench": ["checkpoint=model.ckpt"],
    "export": ["checkpoint=model.ckpt", "output=exported"],
    "average": ["run=runs/fra-eng-cpu/DATE", "output=averaged"],
    "serve": ["checkpoint=model.ckpt"],
}


@functools.cache
def plain_command_config(command: str, *overrides: str) -> dict:
    return OmegaConf.to_container(composed(command, *GIVEN[command], *overrides), resolve=True)


def command_config(command: str, *overrides: str) -> DictConfig:
    """A command's composed config with its required keys given, untyped: a test may set any value."""
    return OmegaConf.create(plain_command_config(command, *overrides))


@pytest.mark.parametrize("command", COMMAND_SETTINGS)
def test_each_commands_defaults_pass_its_check_once_its_required_keys_are_given(command):
    assert isinstance(check_command(COMMAND_SETTINGS[command], command_config(command)), COMMAND_SETTINGS[command])


@pytest.mark.parametrize("command", ["translate", "export", "compare"])
def test_a_required_key_not_given_fails_the_commands_check_naming_it(command):
    required = GIVEN[command][0].split("=")[0]
    with pytest.raises(MissingMandatoryValue) as error:
        check_command(COMMAND_SETTINGS[command], composed(command))
    assert error.value.full_key == required  # one_line_errors: "KEY is required: give KEY=..."


EVERY_COMMAND_KEY = [(command, key) for command, settings in COMMAND_SETTINGS.items() for key in rules(settings)]


@pytest.mark.parametrize("command, key", EVERY_COMMAND_KEY)
def test_each_invalid_key_of_a_command_is_one_line_naming_it_from_the_check_the_command_runs_first(command, key):
    """Driven from the command classes: a new field is tried here without a new line of test."""
    cfg = command_config(command)
    cfg[key] = invalid(rules(COMMAND_SETTINGS[command])[key])
    with pytest.raises(SettingsError) as error:
        check_command(COMMAND_SETTINGS[command], cfg)
    one_line_naming(key, error)


def first_error(command: str, cfg: DictConfig, tmp_path: Path, capsys) -> str:
    """What a command says first, run as its command line runs it (train: its training, in a run directory)."""
    if command == "train":
        with pytest.raises(SettingsError) as error:
            run.train(cfg, tmp_path / "run")
        return str(error.value)
    with pytest.raises(SystemExit) as exit:
        importlib.import_module(f"seq2seq.commands.{command}").main(cfg)
    assert exit.value.code == 1
    return capsys.readouterr().err.removeprefix("error: ").rstrip("\n")


@pytest.mark.parametrize("command", COMMAND_SETTINGS)
def test_each_command_checks_its_keys_before_it_reads_any_model_run_or_data(command, tmp_path, monkeypatch, capsys):
    """Every model, run and sweep named is missing, and training may not touch data: any work would fail otherwise."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run, "TranslationData", None)
    key = fields(COMMAND_SETTINGS[command])[-1].name
    value = invalid(rules(COMMAND_SETTINGS[command])[key])
    given = ["checkpoint=missing.ckpt"] if command == "probe" else GIVEN[command]
    cfg = composed(command, *given, f"{key}={value}")
    assert first_error(command, cfg, tmp_path, capsys).startswith(f"{key}={value!r} is not ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command, overrides, message",
    [
        ("average", ["checkpoints=[a.ckpt,b.ckpt]"],
         "give either run=RUN_DIR (its last checkpoints) or checkpoints=[A,B,...], not both or none"),
        ("average", ["run=null"],
         "give either run=RUN_DIR (its last checkpoints) or checkpoints=[A,B,...], not both or none"),
        ("average", ["run=null", "checkpoints=[a.ckpt,b.ckpt]", "last=2"],
         "last=2 counts a run's checkpoints; checkpoints=[...] averages every one given: drop last, or give "
         "run=RUN_DIR"),
        ("score", ["input=pairs.tsv", "source=a.txt", "target=b.txt"],
         "give input=PAIRS.tsv, or source=FILE target=FILE (aligned), or neither (SOURCE<TAB>TARGET lines on "
         "standard input)"),
        ("score", ["source=a.txt"],
         "give input=PAIRS.tsv, or source=FILE target=FILE (aligned), or neither (SOURCE<TAB>TARGET lines on "
         "standard input)"),
        ("translate", ["checkpoint=[a.ckpt,b.ckpt]", "attention_plot=plots"],
         "attention_plot draws one model's attention, not an ensemble's; give one checkpoint"),
        ("translate", ["checkpoint=a.ckpt", "prefix_column=true", "decode.prefix='I am'"],
         "prefix_column=true takes each line's prefix from its second column, decode.prefix one for every line: give "
         "one of them"),
        ("export", ["+outptu=exported"], "outptu is not a setting; use one of ['checkpoint', 'output']"),
    ],
)  # fmt: skip
def test_each_rule_between_a_commands_keys_is_one_line_naming_the_keys_and_the_fix(command, overrides, message):
    with pytest.raises(SettingsError) as error:
        check_command(COMMAND_SETTINGS[command], command_config(command, *overrides))
    assert str(error.value) == message


def test_a_key_neither_a_commands_nor_a_groups_is_one_line_naming_the_commands_keys_and_groups():
    with pytest.raises(SettingsError) as error:
        check_command(TranslateSettings, command_config("translate", "+threds=2"))
    keys = [each.name for each in fields(TranslateSettings)]
    assert str(error.value) == f"threds is not a setting; use one of {keys}, or GROUP.KEY for a group in ['decode']"


@pytest.mark.parametrize(
    "command, overrides",
    [
        ("average", ["run=null", "checkpoints=[a.ckpt,b.ckpt]"]),
        ("score", ["source=a.txt", "target=b.txt"]),
        ("score", ["input=pairs.tsv"]),
        ("translate", ["checkpoint=[a.ckpt]", "attention_plot=plots"]),  # a list of one is that model
        ("evaluate", ["input=[source.txt,reference.txt]", "checkpoint=[a.ckpt,b.ckpt]"]),
    ],
)
def test_what_the_rules_between_a_commands_keys_allow_passes(command, overrides):
    check_command(COMMAND_SETTINGS[command], command_config(command, *overrides))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.bridge=concat", "model.decoder.hidden_size=100"],
         "model.decoder.hidden_size=100 cannot match model.bridge=concat, which gives 512; set it to null or use "
         "model.bridge=project"),
        (["model.decoder.input_feeding=true"], "model.decoder.input_feeding=true needs attention; set model.attention"),
        (["model.attention=luong_dot"],
         "model.attention=luong_dot needs decoder size 256 == encoder output size 512; use model.bridge=concat "
         "(bidirectional) or model.attention=luong_general"),
        (["decode.beam_size=5"],
         "decode.beam_size=5 is a beam search setting, but decode.strategy=greedy; use decode=beam (or leave "
         "decode.beam_size at 1)"),
        (["decode.length_penalty=0.6"],
         "decode.length_penalty=0.6 is a beam search setting, but decode.strategy=greedy; use decode=beam (or leave "
         "decode.length_penalty at 0)"),
        (["test_decode.strategy=greedy"],
         "test_decode.beam_size=5 is a beam search setting, but test_decode.strategy=greedy; use test_decode=beam (or "
         "leave test_decode.beam_size at 1)"),
        (["decode.n_best=2"],
         "decode.n_best=2 is more than decode.strategy=greedy finds; use decode=beam with decode.beam_size >= "
         "decode.n_best"),
        (["test_decode.n_best=6"],
         "test_decode.n_best=6 is more than test_decode.strategy=beam finds; use test_decode=beam with "
         "test_decode.beam_size >= test_decode.n_best"),
        (["model.tie_embeddings=true", "model.bridge=concat"],
         "model.tie_embeddings=true needs model.embedding_dim=256 to equal the output layer's input size, 512 (the "
         "decoder's state); set model.embedding_dim=512 or model.tie_embeddings=false"),
        (["model.tie_embeddings=true", "model.decoder.feed_context=true"],
         "model.tie_embeddings=true needs model.embedding_dim=256 to equal the output layer's input size, 512 (the "
         "decoder's state and, with model.decoder.feed_context, the context); set model.embedding_dim=512 or "
         "model.tie_embeddings=false"),
        (["data.valid_fraction=0.5", "data.test_fraction=0.5"],
         "data.valid_fraction=0.5 and data.test_fraction=0.5 must be >= 0 and sum to less than 1"),
        (["data=files", "data.train=a.tsv", "data.valid_fraction=0.7", "data.test_fraction=0.4"],
         "data.valid_fraction=0.7 and data.test_fraction=0.4 must be >= 0 and sum to less than 1"),
        (["data.batch_tokens=65"], "data.batch_tokens=65 is not an integer >= 66 (data.max_tokens + 2)"),
        (["data.pair=deu-eng"],
         "data.src_lang=fra and data.tgt_lang=eng are not the languages of data.pair=deu-eng; use deu and eng, "
         "in either order"),
        (["data=files", "data.train=a.tsv", "data.tgt_column=0"],
         "data.src_column and data.tgt_column are both 0; give two columns"),
        (["+model.encoder.size=3"],
         "model.encoder.size is not a setting; use one of ['hidden_size', 'num_layers', 'bidirectional', 'packed']"),
    ],
)  # fmt: skip
def test_each_rule_between_keys_is_one_line_naming_the_keys_and_the_fix(overrides, message):
    with pytest.raises(SettingsError) as error:
        check_command(TrainingSettings, train_config(*overrides))
    assert str(error.value) == message


def test_a_beam_only_setting_at_its_default_is_accepted_under_greedy_and_decode_beam_takes_any():
    check_command(TrainingSettings, train_config("decode.beam_size=1", "decode.length_penalty=0"))
    check_command(TrainingSettings, train_config("decode=beam", "decode.beam_size=3", "decode.length_penalty=0.6"))


def test_a_checkpoints_saved_model_group_converts_to_model_settings_in_one_call(checkpoint):
    trained = load_checkpoint(checkpoint)
    settings = read(ModelSettings, trained.config["model"], "model")
    assert (settings.embedding_dim, settings.encoder.hidden_size, settings.decoder_hidden_size) == (8, 8, 8)


def test_a_model_group_saved_before_a_key_existed_takes_its_default_and_a_key_without_one_stays_missing():
    saved = copy.deepcopy(plain_train_config()["model"])
    del saved["tie_embeddings"]  # as models saved before the key was added hold it
    assert read(ModelSettings, with_defaults(ModelSettings, saved), "model").tie_embeddings is False
    del saved["encoder"]["packed"]  # no default: the file is refused, not read with a guess
    with pytest.raises(SettingsError, match=r"^model\.encoder\.packed is missing"):
        read(ModelSettings, with_defaults(ModelSettings, saved), "model")


NETWORK = {"torch", "seq2seq.model", "seq2seq.encoder", "seq2seq.decoder", "seq2seq.handoff", "seq2seq.attention",
           "seq2seq.search", "seq2seq.translator"}  # fmt: skip


def test_the_settings_import_nothing_of_the_network():
    for path in Path(CONF_DIR).parent.joinpath("seq2seq", "settings").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {name.split(".")[0] if name.startswith("torch") else name for name in imported} & NETWORK, path


@pytest.mark.slow
def test_importing_seq2seq_registers_nothing_in_hydras_config_store_or_omegaconfs_resolvers():
    commands = "; ".join(f"import seq2seq.commands.{name}" for name in COMMAND_SETTINGS)
    code = (f"{commands}; from hydra.core.config_store import ConfigStore; from omegaconf import OmegaConf; "
            "print(ConfigStore.instance().repo, OmegaConf.has_resolver('pid'))")  # fmt: skip
    store = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'hydra'" in store and "decode" not in store and "recipe" not in store
    assert store.endswith(" False\n")  # no ${pid:} until a command (or ``composed``) registers it


def command_raising(error: BaseException):
    @one_line_errors
    def main() -> None:
        raise error

    return main


def test_a_users_mistake_is_one_line_and_exit_status_1(capsys, monkeypatch):
    monkeypatch.delenv("SEQ2SEQ_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        command_raising(SettingsError("decode.beam_size=0 is not an integer >= 1"))()
    assert exited.value.code == 1
    assert capsys.readouterr().err == "error: decode.beam_size=0 is not an integer >= 1\n"


def test_a_required_key_not_given_is_one_line_naming_it(capsys, monkeypatch):
    monkeypatch.delenv("SEQ2SEQ_DEBUG", raising=False)
    cfg = composed("translate")
    with pytest.raises(SystemExit):
        one_line_errors(lambda: cfg.checkpoint)()
    assert capsys.readouterr().err == "error: checkpoint is required: give checkpoint=... (see --help)\n"


def test_an_internal_value_error_is_a_bug_and_keeps_its_traceback(capsys):
    with pytest.raises(ValueError, match=r"^a bug$"):
        command_raising(ValueError("a bug"))()
    assert capsys.readouterr().err == ""


def test_seq2seq_debug_keeps_the_traceback_of_a_users_mistake(monkeypatch):
    monkeypatch.setenv("SEQ2SEQ_DEBUG", "1")
    for error in (SettingsError("decode.beam_size=0 is not an integer >= 1"), MissingMandatoryValue("checkpoint")):
        with pytest.raises(type(error)):
            command_raising(error)()
    assert issubclass(SettingsError, UserError)
