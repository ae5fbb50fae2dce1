"""``python bench/peer.py [key=value ...]``: ours and JoeyNMT 2.3.0, same data, architecture and steps, side by side.

A tool of the repository, not of the package: it drives the installed ``seq2seq`` through its command line.

Every training and decoding run is a subprocess, so that each system's peak memory is its own (VmHWM)
and JoeyNMT never shares our interpreter: it lives in a virtualenv under the cache, made here from
``joeynmt-requirements.txt`` beside this file. What is compared, how each figure is measured and what still
differs: ``README.md`` beside this file. Options are ``key=value`` (see ``DEFAULTS``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import load_checkpoint, read_checkpoint
from seq2seq.commands.common import log_to_stderr, one_line_errors
from seq2seq.core.translator import Translator, pick_device
from seq2seq.data.prepare import load_splits, prepare
from seq2seq.errors import SettingsError
from seq2seq.metrics import corpus_scores, timed_translation
from seq2seq.resources import resource_dir
from seq2seq.settings import decoder_hidden_size
from seq2seq.settings.presets import composed
from seq2seq.training.monitor import hardware

log = logging.getLogger(__name__)

JOEYNMT_VERSION = "2.3.0"
REQUIREMENTS = Path(__file__).resolve().parent / "joeynmt-requirements.txt"

DEFAULTS = {
    "steps": 300,  # optimizer steps, both systems
    "recipe": "fra-eng-small-attn",
    "hidden": 256,  # encoder GRU per direction; the decoder is twice this (both directions, concatenated)
    "embedding": 256,
    "batch_tokens": 800,  # padded tokens per training batch, both systems
    "sentences": None,  # test sentences to decode; default all
    "batch_size": 64,  # sentences per decoding batch, both systems
    "repeats": 3,  # decodings of the test set per system, alternating; the fastest counts
    "threads": None,  # CPU threads of every subprocess (OMP_NUM_THREADS); default: all cores
    "paths": OmegaConf.load(resource_dir("conf") / "paths" / "default.yaml"),  # mirror and cache, as every command
    "work_dir": "${paths.cache_dir}/bench/peer",  # data files, runs and logs of the last benchmark
    "joeynmt_venv": "${paths.cache_dir}/bench/joeynmt-venv",
    "wheels": "/opt/wheels",  # a local torch wheel, if any, saves downloading one
}
SPECIALS = {  # JoeyNMT puts <unk> first; our sentencepiece models have <pad> first (see write_corpus)
    "unk_token": "<unk>", "unk_id": 0, "pad_token": "<pad>", "pad_id": 1,
    "bos_token": "<s>", "bos_id": 2, "eos_token": "</s>", "eos_id": 3,
}  # fmt: skip
INIT_HIDDEN = {"concat": "last", "project": "bridge"}  # our bridge → JoeyNMT's decoder.init_hidden
ATTENTION = {"bahdanau": "bahdanau", "luong_general": "luong"}


@dataclass
class Figures:
    """One system's results; field names are the keys of the ratios line."""

    train_tok_s: float
    greedy_sent_s: float
    beam5_sent_s: float
    greedy_bleu: float
    beam5_bleu: float
    train_peak_mb: float
    decode_peak_mb: float
    parameters: int


ROWS = {
    "train_tok_s": "training target tokens/s",
    "greedy_sent_s": "greedy sentences/s",
    "beam5_sent_s": "beam 5 sentences/s",
    "greedy_bleu": "test BLEU, greedy",
    "beam5_bleu": "test BLEU, beam 5",
    "train_peak_mb": "peak RSS training (MB)",
    "decode_peak_mb": "peak RSS decoding (MB)",
    "parameters": "parameters",
}
RATIOS = ("train_tok_s", "greedy_sent_s", "beam5_sent_s")


def table(ours: Figures, peer: Figures) -> str:
    lines = [f"{'':26s} {'ours':>10s} {'JoeyNMT':>10s} {'ours/JoeyNMT':>13s}"]
    for name, label in ROWS.items():
        a, b = getattr(ours, name), getattr(peer, name)
        digits = 0 if name == "parameters" else 1
        ratio = f"{a / b:13.2f}" if b else f"{'-':>13s}"
        lines.append(f"{label:26s} {a:10.{digits}f} {b:10.{digits}f} {ratio}")
    return "\n".join(lines)


def ratios_line(ours: Figures, peer: Figures) -> str:
    return "ratios " + " ".join(f"{name}={getattr(ours, name) / getattr(peer, name):.2f}" for name in RATIOS)


@dataclass
class Finished:
    seconds: float
    peak_mb: float  # the child's own peak resident memory
    output: str


def _peak_rss_mb(pid: int) -> float:
    """The process's own high-water resident memory (VmHWM), or 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)


def run(command: list[str], log_path: Path, env: dict[str, str], poll_seconds: float = 0.05) -> Finished:
    """Run to completion, output to ``log_path``, sampling the child's own peak memory while it runs.

    Not ``ru_maxrss`` from ``wait4``: Linux counts the parent's resident memory at the moment of the spawn
    into it, and the parent here holds torch and the corpus.
    """
    started = time.perf_counter()
    peak = 0.0
    with log_path.open("w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        while child.poll() is None:
            peak = max(peak, _peak_rss_mb(child.pid))
            time.sleep(poll_seconds)
    output = log_path.read_text()
    if child.returncode:
        tail = "\n".join(output.splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({child.returncode}); log {log_path}:\n{tail}")
    return Finished(time.perf_counter() - started, peak, output)


def ensure_joeynmt(venv: Path, wheels: Path | None) -> Path:
    """JoeyNMT's own virtualenv under the cache: reused when it imports the pinned version, else made anew."""
    python = venv / "bin" / "python"
    # importing the trainer pulls in torch, sentencepiece and importlib_metadata: a broken venv fails here
    check = [str(python), "-c", f"import joeynmt, joeynmt.training; assert joeynmt.__version__ == {JOEYNMT_VERSION!r}"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    started = time.perf_counter()
    log.info("installing JoeyNMT %s into %s (once)", JOEYNMT_VERSION, venv)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    local_torch = sorted(wheels.glob(f"torch-*-{tag}-*.whl")) if wheels and wheels.is_dir() else []
    if local_torch:
        subprocess.run([*pip, str(local_torch[-1])], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run(check, check=True)
    log.info("JoeyNMT installed in %.0f s", time.perf_counter() - started)
    return python


def our_overrides(options: DictConfig) -> list[str]:
    """``seq2seq.train`` overrides: the recipe, the benchmark's sizes, exactly ``steps`` steps."""
    mirror = "null" if options.paths.mirror is None else options.paths.mirror
    return [
        f"recipe={options.recipe}",
        "model.attention=bahdanau",
        f"model.embedding_dim={options.embedding}",
        f"model.encoder.hidden_size={options.hidden}",
        f"data.batch_tokens={options.batch_tokens}",
        f"paths.mirror={mirror}",
        f"paths.cache_dir={options.paths.cache_dir}",
        f"trainer.max_steps={options.steps}",
        f"trainer.val_check_interval={options.steps}",  # validate (and checkpoint) once, after the last step
        "trainer.check_val_every_n_epoch=null",  # count validation steps across epochs
        "trainer.max_epochs=-1",
        "trainer.max_time=null",
        "trainer.enable_progress_bar=false",
        f"patience={options.steps}",  # no early stop before `steps`
    ]


def searches() -> DictConfig:
    """What ``python -m seq2seq.bench`` times: greedy, and ``decode=beam`` (beam 5, length penalty 1)."""
    return composed("bench").searches


FIGURE_KEYS = {"greedy": "greedy", "beam": "beam5"}  # a search's name → its key among the figures


def compose_config(overrides: list[str]) -> DictConfig:
    """Our training config as ``seq2seq.train`` will see it with these overrides."""
    return composed("train", *overrides)


def write_corpus(data_cfg: DictConfig, directory: Path, sentences: int | None) -> list[tuple[str, str]]:
    """Our splits as the text files JoeyNMT reads, our sentencepiece models and their vocabularies; the test pairs.

    A vocabulary file lists our pieces in id order; JoeyNMT puts its specials first, so the two vocabularies
    hold the same pieces and differ only in that ``<unk>`` and ``<pad>`` swap ids.
    The training pairs are parsed again (the encoded splits keep no training text) and written as they come;
    JoeyNMT drops those over ``max_tokens`` itself (its ``max_length``).
    """
    encoded, src_tok, tgt_tok = prepare(data_cfg)
    directory.mkdir(parents=True, exist_ok=True)
    splits = {"train": load_splits(data_cfg)["train"]}
    splits.update({split: list(zip(encoded[split].sources, encoded[split].targets)) for split in ("valid", "test")})
    for split, name in (("train", "train"), ("valid", "dev"), ("test", "test")):
        cut = sentences if split == "test" else None
        with (
            open(directory / f"{name}.{data_cfg.src_lang}", "w") as source_file,
            open(directory / f"{name}.{data_cfg.tgt_lang}", "w") as target_file,
        ):
            for source, target in islice(splits[split], cut):
                source_file.write(f"{source}\n")
                target_file.write(f"{target}\n")
    for side, tok in (("src", src_tok), ("trg", tgt_tok)):
        (directory / f"{side}.model").write_bytes(tok.model_proto)
        pieces = tok.id_to_piece(range(len(tok)))
        (directory / f"{side}_vocab.txt").write_text("".join(f"{piece}\n" for piece in pieces))
    test = encoded["test"]
    return list(zip(test.sources, test.targets))[:sentences]


def joeynmt_config(cfg: DictConfig, steps: int, data_dir: Path, model_dir: Path, batch_size: int) -> dict[str, Any]:
    """JoeyNMT's training configuration, derived from ours so that the two cannot drift apart."""
    model, data = cfg.model, cfg.data
    if model.bridge not in INIT_HIDDEN or model.attention not in ATTENTION or model.cell != "gru":
        raise SettingsError(
            f"the peer benchmark needs a GRU, bridge {tuple(INIT_HIDDEN)}, attention {tuple(ATTENTION)}"
        )
    encoder = model.encoder
    directions = 2 if encoder.bidirectional else 1
    decoder_hidden = decoder_hidden_size(model.bridge, encoder.hidden_size, directions, model.decoder.hidden_size)
    embeddings = {"embedding_dim": model.embedding_dim, "scale": False}

    def side(lang: str, name: str) -> dict[str, Any]:
        return {
            "lang": lang,
            "level": "bpe",
            "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {"model_file": str(data_dir / f"{name}.model")},
            "voc_file": str(data_dir / f"{name}_vocab.txt"),
            "lowercase": False,
            "max_length": data.max_tokens,
        }

    return {
        "name": "seq2seq-peer",
        "joeynmt_version": JOEYNMT_VERSION,
        "model_dir": str(model_dir),
        "use_cuda": torch.cuda.is_available(),  # as ours, which trains and decodes on a GPU when there is one
        "random_seed": cfg.seed,
        "data": {
            "train": str(data_dir / "train"),
            "dev": str(data_dir / "dev"),
            "test": str(data_dir / "test"),
            "dataset_type": "plain",
            "src": side(data.src_lang, "src"),
            "trg": side(data.tgt_lang, "trg"),
            "special_symbols": SPECIALS,
        },
        "training": {
            "optimizer": "adam",  # ours is AdamW with weight decay 0: the same update
            "learning_rate": cfg.optim.lr,
            "weight_decay": cfg.optim.weight_decay,
            "scheduling": "exponential",  # with factor 1: a constant rate ("plateau" fails on current torch)
            "decrease_factor": 1.0,
            "label_smoothing": cfg.optim.label_smoothing,
            "normalization": "tokens",  # mean over target tokens, as ours
            "clip_grad_norm": cfg.trainer.gradient_clip_val,
            "batch_type": "token",
            "batch_size": data.batch_tokens,
            "updates": steps,
            "epochs": 1_000_000,  # `updates` ends training
            "logging_freq": steps,  # one speed line, at the last step (see joeynmt_training_speed)
            "validation_freq": steps,  # validate once, after the last step, outside the timed window
            "early_stopping_metric": "bleu",
            "keep_best_ckpts": 1,
            "shuffle": True,
            "overwrite": True,
            "print_valid_sents": [0],
        },
        "testing": {"batch_size": batch_size, "batch_type": "sentence", "eval_metrics": ["bleu"]},
        "model": {
            "encoder": {
                "type": "recurrent",
                "rnn_type": "gru",
                "hidden_size": encoder.hidden_size,
                "num_layers": encoder.num_layers,
                "bidirectional": encoder.bidirectional,
                "dropout": model.dropout,  # JoeyNMT: on the embeddings (and between layers)
                "embeddings": embeddings,
            },
            "decoder": {
                "type": "recurrent",
                "rnn_type": "gru",
                "hidden_size": decoder_hidden,
                "num_layers": encoder.num_layers,
                "attention": ATTENTION[model.attention],
                # Bahdanau: our step reads [embedding; context], JoeyNMT's [embedding; previous attentional
                # vector]: the same sizes and work per step
                "input_feeding": model.attention == "bahdanau" or model.decoder.input_feeding,
                "init_hidden": INIT_HIDDEN[model.bridge],
                "dropout": model.dropout,
                "hidden_dropout": model.dropout,
                "embeddings": embeddings,
            },
        },
    }


def joeynmt_test_config(config: dict[str, Any], checkpoint: Path, beam_size: int, alpha: float) -> dict[str, Any]:
    """The training configuration turned to decoding the test set only, with ``checkpoint``."""
    data = {k: v for k, v in config["data"].items() if k not in ("train", "dev")}
    testing = {**config["testing"], "beam_size": beam_size, "beam_alpha": alpha, "load_model": str(checkpoint)}
    return {**config, "data": data, "testing": testing}


STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
EPOCH_START = re.compile(STAMP + r".* - EPOCH \d+$", re.M)
EPOCH_END = re.compile(r"num\. of tokens: (\d+), ([\d.]+)\[sec\]$", re.M)
SPEED = re.compile(STAMP + r".* Step: +\d+, .*Tokens per Sec: +([\d.]+)", re.M)


def _time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def joeynmt_training_speed(output: str) -> float:
    """Target tokens/s over all training steps, validation excluded, from JoeyNMT's own log.

    Finished epochs log their target tokens and seconds. The last, unfinished epoch (training stops at
    ``updates`` mid-epoch) only logs its tokens/s, at the last step; its seconds are read from the log's
    timestamps, from its ``EPOCH`` line to that speed line.
    """
    finished = [(int(tokens), float(seconds)) for tokens, seconds in EPOCH_END.findall(output)]
    speeds = SPEED.findall(output)
    if not speeds:
        raise ValueError("no 'Tokens per Sec' line in JoeyNMT's training log")
    stamp, rate = speeds[-1]
    epoch_start = [s for s in EPOCH_START.findall(output) if _time(s) <= _time(stamp)][-1]
    seconds = _time(stamp) - _time(epoch_start)
    total_tokens = sum(t for t, _ in finished) + float(rate) * seconds
    return total_tokens / (sum(s for _, s in finished) + seconds)


def joeynmt_parameters(output: str) -> int:
    return int(re.findall(r"Total params: (\d+)", output)[-1])


def joeynmt_generation_seconds(output: str) -> float:
    return float(re.findall(r"Generation took ([\d.]+)\[sec\]", output)[-1])


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def bleu(hypotheses: list[str], pairs: list[tuple[str, str]]) -> float:
    return corpus_scores(hypotheses, [reference for _, reference in pairs])["bleu"]


@dataclass
class Trained:
    train_tok_s: float
    peak_mb: float
    decode: Callable[[], dict[str, float]]  # one timed decoding of the test set: sentences/s and peak MB


def train_ours(options: DictConfig, work: Path, env: dict[str, str]) -> Trained:
    """Our real training entry point for exactly ``steps`` steps, then a decoder of its last checkpoint."""
    run_dir = work / "ours"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "seq2seq.train", *our_overrides(options), f"hydra.run.dir={run_dir}"]
    log.info("ours: training %d steps", options.steps)
    trained = run(command, work / "ours-train.log", env)
    summary = json.loads((run_dir / "test_metrics.json").read_text())
    if summary["steps"] != options.steps:
        raise RuntimeError(f"ours trained {summary['steps']} steps, not {options.steps}; see {work}/ours-train.log")
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if (step := read_checkpoint(checkpoint)["global_step"]) != options.steps:
        raise RuntimeError(f"{checkpoint} holds the weights of step {step}, not {options.steps}")
    epochs = summary["throughput"]
    train_tok_s = sum(e["target_tokens"] for e in epochs) / sum(e["train_seconds"] for e in epochs)
    command = [sys.executable, __file__, "decode", f"checkpoint={checkpoint}", f"directory={work}",
               f"batch_size={options.batch_size}"]  # fmt: skip

    def decode() -> dict[str, float]:
        decoded = run(command, work / "ours-decode.log", env)
        return {**json.loads((work / "ours-speed.json").read_text()), "peak_mb": decoded.peak_mb}

    return Trained(train_tok_s, trained.peak_mb, decode)


def train_joeynmt(options: DictConfig, cfg: DictConfig, work: Path, env: dict[str, str]) -> Trained:
    """JoeyNMT, in its own virtualenv, for exactly ``steps`` updates, then a decoder of its last checkpoint."""
    python = ensure_joeynmt(Path(options.joeynmt_venv).expanduser(), options.wheels and Path(options.wheels))
    model_dir = work / "joeynmt"
    config = joeynmt_config(cfg, options.steps, work / "data", model_dir, options.batch_size)
    (work / "joeynmt-train.yaml").write_text(OmegaConf.to_yaml(config))
    log.info("JoeyNMT: training %d steps", options.steps)
    trained = run([str(python), "-m", "joeynmt", "train", str(work / "joeynmt-train.yaml"), "--skip-test"],
                  work / "joeynmt-train.log", env)  # fmt: skip
    beam = searches().beam
    sentences = len(read_lines(work / "data" / f"test.{cfg.data.src_lang}"))

    def decode() -> dict[str, float]:
        figures = {"parameters": joeynmt_parameters(trained.output), "peak_mb": 0.0}
        for name, beam_size, alpha in (("greedy", 1, -1.0), ("beam5", beam.beam_size, beam.length_penalty)):
            path = work / f"joeynmt-{name}.yaml"
            path.write_text(OmegaConf.to_yaml(joeynmt_test_config(config, model_dir / "latest.ckpt", beam_size, alpha)))
            output = work / f"joeynmt.{name}"  # JoeyNMT writes OUTPUT.test
            decoded = run([str(python), "-m", "joeynmt", "test", str(path), "--output-path", str(output)],
                          work / f"joeynmt-{name}.log", env)  # fmt: skip
            (work / f"joeynmt.{name}.test").rename(output)
            figures[name] = sentences / joeynmt_generation_seconds(decoded.output)
            figures["peak_mb"] = max(figures["peak_mb"], decoded.peak_mb)
        return figures

    return Trained(joeynmt_training_speed(trained.output), trained.peak_mb, decode)


def figures(
    trained: Trained, decodings: list[dict[str, float]], hypotheses: str, pairs: list[tuple[str, str]]
) -> Figures:
    """Training speed, the fastest of the repeated decodings (the least disturbed by a shared machine), BLEU."""
    return Figures(
        trained.train_tok_s,
        max(d["greedy"] for d in decodings),
        max(d["beam5"] for d in decodings),
        bleu(read_lines(Path(f"{hypotheses}.greedy")), pairs),
        bleu(read_lines(Path(f"{hypotheses}.beam5")), pairs),
        trained.peak_mb,
        max(d["peak_mb"] for d in decodings),
        int(decodings[0]["parameters"]),
    )


def bench_peer(argv: list[str]) -> tuple[Figures, Figures]:
    """Prepare the data once, run both systems, print the table and the ratios line."""
    options = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(argv))
    work = Path(options.work_dir).expanduser()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = compose_config(our_overrides(options))
    pairs = write_corpus(cfg.data, work / "data", options.sentences)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # each system sees only its own install
    if options.threads:
        env["OMP_NUM_THREADS"] = str(options.threads)
    systems = {"ours": train_ours(options, work, env), "joeynmt": train_joeynmt(options, cfg, work, env)}
    decodings: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
    for repeat in range(options.repeats):  # alternate, so that a slow spell of the machine hits both
        for name, trained in systems.items():
            log.info("%s: decoding %d test sentences, greedy and beam 5 (%d/%d)", name, len(pairs), repeat + 1,
                     options.repeats)  # fmt: skip
            decodings[name].append(trained.decode())
    ours, peer = (figures(systems[name], decodings[name], str(work / name), pairs) for name in systems)
    threads = options.threads or torch.get_num_threads()
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, {hardware().split(',')[0]}, {threads} thread(s), torch {torch.__version__}; "
        f"{options.steps} steps, {len(pairs)} test sentences, decoding batch {options.batch_size}; logs in {work}"
    )
    print(table(ours, peer))
    print(ratios_line(ours, peer), flush=True)
    return ours, peer


def decode_ours(argv: list[str]) -> None:
    """The child that times our decoding, so that its peak memory is measured apart from the parent's."""
    options = OmegaConf.from_dotlist(argv)
    work = Path(options.directory)
    trained = load_checkpoint(options.checkpoint, pick_device())
    sources = read_lines(work / "data" / f"test.{trained.config['data']['src_lang']}")
    speed: dict[str, float] = {"parameters": sum(p.numel() for p in trained.model.parameters())}
    for name, decode in searches().items():
        translator = Translator(trained, OmegaConf.merge(decode, {"batch_size": options.batch_size}))
        key = FIGURE_KEYS[name]
        speed[key], translations = timed_translation(translator, sources, warm_up=False)  # as JoeyNMT: no warm-up
        (work / f"ours.{key}").write_text("".join(f"{line}\n" for line in translations))
    (work / "ours-speed.json").write_text(json.dumps(speed))


@one_line_errors
def main(argv: list[str]) -> None:
    log_to_stderr()
    if argv[:1] == ["decode"]:
        decode_ours(argv[1:])
    elif argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
    else:
        bench_peer(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
