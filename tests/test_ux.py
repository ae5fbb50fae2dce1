"""What a user sees: progress bars on standard error, CPU threads, loggers and callbacks, the run directory,
the GPU-sized-recipe warning and projected time, ``--help`` for every command, the optional plotting extra."""

from __future__ import annotations

import ast
import csv
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace

import lightning as L
import pytest
import torch
from helpers.runs import TINY, tutorial_mirror
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from omegaconf import OmegaConf
from tqdm import tqdm

import seq2seq.__main__ as umbrella
from seq2seq.api import Translator
from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands import average, bench, common, compare, evaluate, export, probe, serve, train, translate
from seq2seq.commands import score as score_command
from seq2seq.errors import SettingsError, UserError
from seq2seq.metrics import score
from seq2seq.plotting import pyplot
from seq2seq.resources import CONF_DIR, register_recipes
from seq2seq.settings import TrainingSettings, check_command
from seq2seq.settings.presets import composed
from seq2seq.training import run
from seq2seq.training.monitor import ProjectedTime, duration

SOURCES = "Je suis content.\nIl fait froid.\nElle est grande.\n"
BAR = re.compile(r"\d+%\|")  # tqdm's "100%|█████|"


# --------------------------------------------------------------------------- progress bars, threads


@pytest.mark.parametrize("progress", ["always", "auto", "never"])
def test_translate_input_file_shows_a_bar_on_stderr_only_when_asked_or_a_terminal(checkpoint, tmp_path, capsys,
                                                                                   progress):  # fmt: skip
    source = tmp_path / "text.txt"
    source.write_text(SOURCES)
    translate.main(composed("translate", f"checkpoint={checkpoint}", f"input={source}", f"progress={progress}"))
    out, err = capsys.readouterr()
    assert out.count("\n") == 3 and not BAR.search(out)  # standard output: the translations alone
    if progress == "always":
        assert BAR.search(err) and "3/3" in err and "lines" in err
    else:  # auto: pytest's standard error is not a terminal
        assert not BAR.search(err)


def test_translate_from_standard_input_shows_no_bar_even_when_asked(checkpoint, capsys, monkeypatch):
    read, write = os.pipe()
    os.write(write, SOURCES.encode())
    os.close(write)
    monkeypatch.setattr(sys, "stdin", os.fdopen(read))
    translate.main(composed("translate", f"checkpoint={checkpoint}", "progress=always"))
    out, err = capsys.readouterr()
    assert out.count("\n") == 3 and not BAR.search(err)


@pytest.mark.slow
@pytest.mark.parametrize("progress", ["always", "auto"])
def test_evaluate_shows_a_bar_of_sentences_on_stderr_only_when_asked_or_a_terminal(checkpoint, tmp_path, capsys,
                                                                                   progress):  # fmt: skip
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"I am {n}.\t{line}\n" for n, line in enumerate(SOURCES.splitlines() * 30)))
    evaluate.main(composed("evaluate", f"checkpoint={checkpoint}", f"input={pairs}", f"progress={progress}",
                           f"output_dir={tmp_path}", "decode.batch_size=4"))  # fmt: skip
    out, err = capsys.readouterr()
    assert out.startswith("pairs.txt: 90 sentences") and not BAR.search(out)
    if progress == "always":
        assert "pairs.txt: 100%|" in err and "90/90" in err and "sentences/s" in err
    else:
        assert not BAR.search(err)


@pytest.mark.slow
def test_scoring_advances_the_bar_every_eight_batches_with_the_same_translations(checkpoint):
    updates = []
    bar = SimpleNamespace(update=updates.append)
    translator = Translator(load_checkpoint(checkpoint), composed("evaluate", "decode.batch_size=4").decode)
    pairs = [(source, "I am happy.") for source in SOURCES.splitlines() * 30]
    metrics, hypotheses = score(translator, pairs, bar)
    assert updates == [32, 32, 26] and metrics["sentences"] == 90
    assert hypotheses == translator.translate([source for source, _ in pairs])  # as translated all at once


@pytest.mark.parametrize("tool", [translate, evaluate])
def test_threads_sets_torchs_cpu_threads(checkpoint, tmp_path, capsys, torch_threads, tool):
    source = tmp_path / "text.txt"
    source.write_text("Je suis content.\tI am happy.\n")
    torch.set_num_threads(2)
    output = f"{'output_dir' if tool is evaluate else 'output'}={tmp_path / 'out'}"
    tool.main(composed(tool.__name__.rsplit(".", 1)[1], f"checkpoint={checkpoint}", f"input={source}", "threads=1",
                       output))  # fmt: skip
    assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_threads_default_leaves_torchs_choice(checkpoint, tmp_path, torch_threads):
    torch.set_num_threads(2)
    bench.bench_decode(composed("bench", f"checkpoint={checkpoint}", "batch_sizes=[4]", "single=1", "sentences=2",
                                f"paths.mirror={tutorial_mirror()}", f"paths.cache_dir={tmp_path}"))  # fmt: skip
    assert torch.get_num_threads() == 2


def test_train_threads_sets_torchs_cpu_threads_before_any_data_work(tmp_path, monkeypatch, torch_threads):
    def no_data_work(*args, **kwargs):
        raise AssertionError("data work")

    monkeypatch.setattr(run, "TranslationData", no_data_work)
    torch.set_num_threads(2)
    with pytest.raises(AssertionError, match="data work"):
        run.train(composed("train", "threads=1"), tmp_path / "run")
    assert torch.get_num_threads() == 1
    with pytest.raises(SettingsError, match=r"^threads=0 is not one of \(None,\) or an integer >= 1$"):
        run.train(composed("train", "threads=0"), tmp_path / "run")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.max_step=30", "trainer.max_step is not an argument of lightning.Trainer; did you mean "
                                 "trainer.max_steps?"),
        ("+trainer.default_root_dir=x", "trainer.default_root_dir is set by seq2seq.train itself; leave it out"),
    ],
)  # fmt: skip
def test_an_unknown_trainer_key_is_one_line_naming_it_before_any_data_work(tmp_path, monkeypatch, override, message):
    monkeypatch.setattr(run, "TranslationData", None)  # any data work would fail with a TypeError
    with pytest.raises(UserError) as raised:
        run.train(composed("train", override), tmp_path / "run")
    assert str(raised.value) == message
    assert list(tmp_path.iterdir()) == []


def test_a_logger_whose_package_is_missing_names_the_extra_to_install(tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'tensorboard'")

    monkeypatch.setattr(TensorBoardLogger, "__init__", missing)
    with pytest.raises(UserError) as raised:
        run.instantiated("logger", OmegaConf.load(Path(CONF_DIR) / "logger" / "tensorboard.yaml"), save_dir=tmp_path)
    install = 'pip install -e ".[tensorboard]"'
    assert str(raised.value) == f"logger: No module named 'tensorboard'; install it with {install}"


@pytest.mark.slow
def test_seq2seq_alone_lists_the_commands_without_loading_torch_or_hydra():
    listed = subprocess.run([sys.executable, "-c", "import seq2seq.__main__ as m, sys; m.main(); print(sorted("
                             "name for name in ('torch', 'hydra', 'lightning') if name in sys.modules))"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert listed.returncode == 0 and listed.stdout.startswith("usage: seq2seq COMMAND")
    assert all(f"  {name} " in listed.stdout for name in umbrella.COMMANDS)
    assert listed.stdout.endswith("[]\n"), "torch, hydra and lightning stay unloaded"


def test_seq2seq_command_runs_that_command_with_its_arguments(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(evaluate, "main", lambda: seen.append(list(sys.argv)))
    monkeypatch.setattr(sys, "argv", ["seq2seq", "evaluate", "checkpoint=x.ckpt", "split=valid"])
    umbrella.main()
    assert seen == [["seq2seq-evaluate", "checkpoint=x.ckpt", "split=valid"]]
    monkeypatch.setattr(sys, "argv", ["seq2seq", "trian"])
    with pytest.raises(SystemExit) as exit:
        umbrella.main()
    assert exit.value.code == 1
    assert capsys.readouterr().err.startswith("error: seq2seq has no command 'trian'; use one of:\n  train ")


@pytest.mark.parametrize(
    ("tool", "override", "message"),
    [
        (translate, "threads=0", "threads=0 is not one of (None,) or an integer >= 1"),
        (evaluate, "threads=two", "threads='two' is not one of (None,) or an integer >= 1"),
        (bench, "threads=0", "threads=0 is not one of (None,) or an integer >= 1"),
        (translate, "progress=yes", "progress='yes' is not one of ('auto', 'always', 'never')"),
        (evaluate, "progress=sometimes", "progress='sometimes' is not one of ('auto', 'always', 'never')"),
    ],
)
def test_a_bad_threads_or_progress_setting_is_one_line_before_the_checkpoint_is_read(tmp_path, capsys, tool,
                                                                                     override, message):  # fmt: skip
    with pytest.raises(SystemExit) as exit:
        tool.main(composed(tool.__name__.rsplit(".", 1)[1], f"checkpoint={tmp_path / 'missing.ckpt'}", override))
    assert exit.value.code == 1
    assert capsys.readouterr().err == f"error: {message}\n"


# --------------------------------------------------------------------------- training: loggers, callbacks, messages


@pytest.mark.slow
def test_user_callbacks_and_loggers_are_added_to_the_runs_own_and_throughput_reaches_the_logger(
    tmp_path, caplog, corpus_cache
):
    own_logger = tmp_path / "own"
    cfg = composed(
        "train", *TINY, f"data.mirror={tutorial_mirror()}", f"data.cache_dir={corpus_cache}", "trainer.max_steps=30",
        "trainer.max_time=null", "trainer.val_check_interval=30", "trainer.limit_val_batches=2",
        "+trainer.callbacks=[{_target_: lightning.pytorch.callbacks.LearningRateMonitor}]",
        f"+trainer.logger={{_target_: lightning.pytorch.loggers.CSVLogger, save_dir: {own_logger}, version: ''}}",
    )  # fmt: skip
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        run.train(cfg, run_dir)
    with (run_dir / "logs" / "metrics.csv").open() as log:
        rows = list(csv.DictReader(log))
    throughput = {"throughput/target_tokens_per_second", "throughput/train_seconds", "throughput/peak_memory_mb",
                  "throughput/flops_per_second", "throughput/matmul_peak_fraction"}  # fmt: skip
    assert throughput <= set(rows[0])
    utilisation = json.loads((run_dir / "test_metrics.json").read_text())["utilisation"]
    counted, formula = utilisation["first_step_flops"].values()  # one real batch, forward and backward
    # the wiring; the formula's 1% is checked on every GRU kind in test_utilisation.py (once, here, 6.8% apart)
    assert utilisation["against"] == "fp32" and abs(formula / counted - 1) < 0.1, utilisation
    assert "lr-AdamW" in rows[0]  # the user's LearningRateMonitor ran, logging into the run's own logger too
    assert [float(r["throughput/steps"]) for r in rows if r["throughput/steps"]] == [30.0]
    assert "throughput/steps" in (own_logger / "lightning_logs" / "metrics.csv").read_text()  # the user's logger
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"run directory: {run_dir}"  # before any data work
    [epoch] = [m for m in messages if m.startswith("epoch 0: ")]
    assert re.search(r" target tokens/s, \d+\.\d GFLOP/s = \d+% of the measured fp32 matrix-product rate, ", epoch)
    [projected] = [m for m in messages if " s per step; " in m]
    assert re.fullmatch(
        r"step 21: \d+\.\d\d\d s per step; 9 more steps to the end would take \d+ (s|min) \(validation not counted\)",
        projected,
    )


def test_the_logger_group_and_the_users_loggers_and_callbacks_are_merged(tmp_path):
    cfg = composed(
        "train",
        "+trainer.callbacks=[{_target_: lightning.pytorch.callbacks.LearningRateMonitor}]",
        "+trainer.logger=[{_target_: lightning.pytorch.loggers.CSVLogger, save_dir: elsewhere}]",
    )
    loggers, callbacks = run.loggers_and_callbacks(cfg, tmp_path)
    assert [(type(one).__name__, one.save_dir) for one in loggers] == [
        ("CSVLogger", str(tmp_path)),
        ("CSVLogger", "elsewhere"),
    ]
    assert [type(one).__name__ for one in callbacks] == ["LearningRateMonitor"]


def test_trainer_logger_false_logs_nothing_and_logger_null_only_the_users(tmp_path):
    assert run.loggers_and_callbacks(composed("train", "+trainer.logger=false"), tmp_path) == (False, [])
    cfg = composed("train", "~logger", "+trainer.logger={_target_: lightning.pytorch.loggers.CSVLogger, save_dir: x}")
    [logger], _ = run.loggers_and_callbacks(cfg, tmp_path)
    assert logger.save_dir == "x"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["logger._target_=nowhere.Logger"], "logger: Error loading 'nowhere.Logger': ModuleNotFoundError"),
        (["+trainer.callbacks=[{_target_: lightning.pytorch.callbacks.Nothing}]"], "trainer.callbacks: Error "),
    ],
)
def test_a_logger_or_callback_that_cannot_be_made_is_one_line_before_any_data_work(tmp_path, monkeypatch,
                                                                                   overrides, message):  # fmt: skip
    monkeypatch.delenv("SEQ2SEQ_MIRROR", raising=False)  # any data work would fail loudly
    cfg = composed("train", f"data.cache_dir={tmp_path / 'cache'}", "data.url=http://127.0.0.1:1/fra-eng.zip",
                   *overrides)  # fmt: skip
    with pytest.raises(SettingsError) as raised:
        run.train(cfg, tmp_path / "run")
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_logger_tensorboard_without_its_package_says_how_to_install_it(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import tensorboard

    monkeypatch.setattr(tensorboard, "_TENSORBOARD_AVAILABLE", False)
    monkeypatch.setattr(tensorboard, "_TENSORBOARDX_AVAILABLE", False, raising=False)
    with pytest.raises(SettingsError) as raised:
        run.loggers_and_callbacks(composed("train", "logger=tensorboard"), tmp_path)
    assert str(raised.value).startswith("logger: Neither `tensorboard` nor `tensorboardX` is available.")
    assert "pip install" in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb"])
def test_the_logger_group_names_lightnings_loggers_writing_into_the_run_directory(logger):
    cfg = composed("train", f"logger={logger}", "recipe=fra-eng-small")
    target = {"csv": "CSVLogger", "tensorboard": "TensorBoardLogger", "wandb": "WandbLogger"}[logger]
    assert cfg.logger._target_ == f"lightning.pytorch.loggers.{target}"
    assert "save_dir" not in cfg.logger  # train gives the run directory


NOTICES = ("litlogger", "LeafSpec", "transfer_batch_to_device", "weights_only", "could not find the monitored key",
           "exists and is not empty")  # fmt: skip


def test_lightnings_warning_that_a_run_resumed_mid_epoch_has_a_loader_that_cannot_resume_is_silenced():
    """TranslationData resumes the batch order exactly (tests/test_faults.py); Lightning asks only the DataLoader and
    would tell the user the results are unreliable. The message is taken from Lightning's own source."""
    source = inspect.getsource(_TrainingEpochLoop)
    start = source.rindex('"', 0, source.index("You're resuming from a checkpoint that ended before the epoch"))
    (message,) = ast.literal_eval(f"({source[start : source.index('category=', start)]})")
    assert "not resumable" in message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.quiet_library_notices()
        warnings.warn(message, PossibleUserWarning, stacklevel=1)
        warnings.warn("a notice of our own", PossibleUserWarning, stacklevel=1)
    assert [str(warning.message) for warning in caught] == ["a notice of our own"]


def test_in_a_terminal_warnings_and_log_lines_print_above_the_training_bar_not_onto_it(monkeypatch):
    written = []
    monkeypatch.setattr(tqdm, "write", lambda text, *args, **kwargs: written.append(text))
    console = logging.StreamHandler(sys.stderr)  # Hydra's console handler, as a training run has it
    logging.getLogger().addHandler(console)
    try:
        with run.warnings_above_the_bar():
            warnings.warn("a library's notice", UserWarning, stacklevel=1)
            logging.getLogger("seq2seq").warning("validation at step 3")
    finally:
        logging.getLogger().removeHandler(console)
    messages = [text.splitlines()[0].rsplit(": ", 1)[-1] for text in written]
    assert messages == ["a library's notice", "validation at step 3"]


@pytest.mark.slow
def test_training_into_a_file_logs_a_line_per_validation_on_stderr_and_only_the_summary_on_stdout(
    tmp_path, corpus_cache
):
    overrides = [o for o in TINY if "enable_progress_bar" not in o and "max_steps" not in o]
    command = [sys.executable, "-m", "seq2seq.train", *overrides, "data.max_tokens=7", "data.batch_tokens=400",
               "trainer.max_steps=30", "trainer.val_check_interval=1.0",
               "test_decode.beam_size=1", f"data.cache_dir={corpus_cache}", f"paths.runs_dir={tmp_path}"]  # fmt: skip
    with (tmp_path / "out.txt").open("w") as stdout:  # not a terminal
        result = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=600,
                                env={**os.environ, "SEQ2SEQ_MIRROR": str(tutorial_mirror())})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = (tmp_path / "out.txt").read_text()
    assert "\r" not in out and out.startswith("run dir:") and len(out.splitlines()) == 4, out
    assert re.findall(r"validation at step (\d+):", result.stderr) == ["0", "15", "30"]
    assert "run directory:" in result.stderr, "Hydra's log goes to standard error"
    assert [notice for notice in NOTICES if notice in result.stderr] == []


@pytest.mark.parametrize(
    "recipe, cpu_recipe",
    [
        ("fra-eng", "fra-eng-cpu"),
        ("fra-eng-attn", "fra-eng-cpu"),
        ("eng-fra", "fra-eng-cpu name=eng-fra-cpu data.src_lang=eng data.tgt_lang=fra"),
        ("fra-eng-context", "fra-eng-small-context"),
    ],
)
def test_a_gpu_sized_recipe_on_a_cpu_warns_at_the_start_naming_the_cpu_recipe(tmp_path, monkeypatch, caplog,
                                                                              recipe, cpu_recipe):  # fmt: skip
    cfg = composed("train", f"recipe={recipe}", "trainer.accelerator=cpu")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the warning must come before the data work

    monkeypatch.setattr(run, "TranslationData", stop)
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        run.train(cfg, tmp_path / "run")
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"recipe {cfg.name} is sized for a GPU and runs here on the CPU: expect hours (the projected time follows "
        f"the first steps); recipe={cpu_recipe} is sized for a CPU"
    )


@pytest.mark.parametrize("recipe", register_recipes())
def test_every_recipe_passes_the_training_checks_and_builds_its_model(recipe):
    cfg = composed("train", f"recipe={recipe}")
    check_command(TrainingSettings, cfg)  # every key, and the rules between keys
    assert cfg.name == recipe


@pytest.mark.parametrize("recipe", ["fra-eng-small", "fra-eng-small-attn", "fra-eng-small-context", "fra-eng-cpu"])
def test_a_cpu_sized_recipe_does_not_warn(recipe):
    assert composed("train", f"recipe={recipe}").cpu_recipe is None


class SlowSteps(Callback):
    """10 ms a step: BoringModel's own steps are too fast for the clock to lead a step limit reliably."""

    def on_train_batch_end(self, *args) -> None:
        time.sleep(0.01)


ENDS = r"step 6: \d\.\d\d\d s per step; {} more steps to the end would take \d+ s \(validation not counted\)"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"max_steps": 26}, ENDS.format(20)),
        ({"max_epochs": 2}, ENDS.format(122)),  # BoringModel: 64 steps an epoch
        (
            {"max_steps": 26, "max_time": "00:01:00:00"},
            ENDS.format(20) + ", before trainer.max_time stops training in 1 h",
        ),
        (
            {"max_epochs": -1, "max_steps": -1, "max_time": "00:00:00:02"},
            r"step 6: \d\.\d{3} s per step; trainer.max_time stops training in \d s, after at most \d+ more steps; "
            r"no step or epoch limit",
        ),
        (  # the "6654 more steps would take 3 h 1 min" for a run max_time ends first: the clock leads
            {"max_steps": 5000, "max_time": "00:00:00:03"},
            r"step 6: \d\.\d{3} s per step; trainer.max_time stops training in \d s, after at most \d+ more steps; "
            + ENDS.format(4994).removeprefix(r"step 6: \d\.\d\d\d s per step; ").replace(r"\d+ s", r"\d+ (s|min)"),
        ),
    ],
)
def test_the_projected_time_follows_the_first_steps_and_names_the_limit_that_ends_training_first(
    caplog, limits, expected
):
    trainer = L.Trainer(**limits, callbacks=[ProjectedTime(steps=5), SlowSteps()], limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="seq2seq.training.monitor"):
        trainer.fit(BoringModel())
    [line] = [r.getMessage() for r in caplog.records if r.name == "seq2seq.training.monitor"]
    assert re.fullmatch(expected, line), line


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.4, "0 s"),
        (40, "40 s"),
        (59.4, "59 s"),
        (59.6, "1 min"),
        (89, "1 min"),
        (3600, "1 h"),
        (720, "12 min"),
        (21000, "5 h 50 min"),
    ],
)
def test_durations_read_as_a_projection_deserves(seconds, words):
    assert duration(seconds) == words


# --------------------------------------------------------------------------- help, extras


@pytest.mark.parametrize(
    ("tool", "purpose", "example"),
    [
        (train, "prepare the data, train", "python -m seq2seq.train recipe=fra-eng-small-attn"),
        (evaluate, "BLEU and chrF", "python -m seq2seq.evaluate checkpoint="),
        (translate, "translate standard input or a file", 'echo "Je suis content." | python -m seq2seq.translate'),
        (score_command, "the log-probability of given translations", "| python -m seq2seq.score checkpoint=PATH"),
        (probe, "run real test sentences", "python -m seq2seq.probe recipe=fra-eng-small"),
        (compare, "one table and one plot", "python -m seq2seq.compare sweep="),
        (bench, "decoding speed", "python -m seq2seq.bench checkpoint=PATH"),
        (export, "a checkpoint as a portable model directory", "python -m seq2seq.export checkpoint="),
        (average, "the mean of a run's last checkpoints", "python -m seq2seq.average run="),
        (serve, "an HTTP translation server", "python -m seq2seq.serve checkpoint=PATH"),
    ],
)
def test_help_says_what_each_command_does_its_main_keys_and_an_example(capsys, monkeypatch, logging_kept,
                                                                       tool: ModuleType, purpose, example):  # fmt: skip
    name = tool.__name__.rsplit(".", 1)[1]
    monkeypatch.setattr(sys, "argv", [f"seq2seq-{name}", "--help"])
    with pytest.raises(SystemExit) as exit:
        tool.main()
    help_text = capsys.readouterr().out
    assert exit.value.code == 0
    assert help_text.startswith(f"seq2seq-{name} (python -m seq2seq.{name}): {purpose}")
    assert "\nusage: python -m seq2seq." in help_text and "\nmain keys:\n" in help_text
    assert "\nexample" in help_text and example in help_text
    if tool is train:  # Hydra prints train's help (common.plain_help is None): its list of the recipes' options
        assert re.search(r"\nrecipe: .*\bfra-eng-small-attn\b", help_text)


def test_help_printed_without_hydra_is_what_hydra_prints_and_train_leaves_its_help_to_hydra(capsys, monkeypatch,
                                                                                            logging_kept):  # fmt: skip
    """Every command but train prints its help template itself (Hydra first lists every config group, ~2 s); it
    must be Hydra's text exactly (each template is held to the one Hydra composes in test_settings). Train's help
    shows the config groups (the recipes), so Hydra prints it (its recipe list is checked with every command's help
    above)."""

    def help_of(tool: ModuleType) -> str:
        monkeypatch.setattr(sys, "argv", ["seq2seq", "--help"])
        with pytest.raises(SystemExit) as exit:
            tool.main()
        assert exit.value.code == 0
        return capsys.readouterr().out

    assert common.only_help_asked(["checkpoint=x", "--help"]) and common.only_help_asked(["-h"])
    assert not common.only_help_asked(["--config-name=export", "--help"]) and not common.only_help_asked(["x=1"])
    ours = help_of(evaluate)
    monkeypatch.setattr(common, "plain_help", lambda config_name: None)  # Hydra's own --help
    assert help_of(evaluate) == ours
    assert common.plain_help("train") is None


def test_plotting_without_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(UserError) as raised:
        pyplot()
    assert str(raised.value) == 'drawing PNGs needs matplotlib, not installed here: pip install -e ".[plot]"'


def test_optional_extras_are_not_core_dependencies():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for extra, package in (("plot", "matplotlib"), ("sweep", "hydra-joblib-launcher"), ("tensorboard", "tensorboard"),
                           ("wandb", "wandb"), ("serve", "starlette")):  # fmt: skip
        assert package not in core and extras[extra][0].startswith(package)
    assert extras["dev"][0] == "seq2seq[plot,sweep,serve]"  # the tests plot, sweep and serve
