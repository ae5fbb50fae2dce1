"""``python -m seq2seq.bench checkpoint=PATH``: decoding speed and BLEU, batched and one sentence at a time, and
scoring speed, in each of the config's ``precisions`` (fp32, and int8 as ``quantize=int8``) side by side.

A benchmark prints figures; it asserts nothing. The searches timed are the config's ``searches`` (``decode``
group presets: greedy, and beam as ``decode=beam``). Ours against JoeyNMT is a tool of the repository, not
of the package: ``python bench/peer.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import load_models
from seq2seq.commands.common import command, log_to_stderr, use_threads
from seq2seq.core.flops import bf16_matmul, matmul_rate, model_shapes
from seq2seq.core.translator import TranslationModel, Translator, pick_device
from seq2seq.data.prepare import corpus_split
from seq2seq.metrics import corpus_scores, timed_scoring, timed_translation
from seq2seq.settings import (
    PRECISIONS,
    BenchSettings,
    DecodeSettings,
    ModelSettings,
    check_command,
    read,
    with_defaults,
)

# scoring searches nothing: of the decode settings it reads only the batch limits, greedy's defaults but batch_size
SCORING = OmegaConf.structured(DecodeSettings())


class Measurement(NamedTuple):
    search: str
    batch_size: int
    precision: str
    sentences_per_second: float
    bleu: float | None  # of all the sentences; None one at a time, which decodes only the first `single`


def table_row(measured: list[Measurement]) -> str:
    """One search and batch size: each precision's speed and BLEU, then each one's speed over the first's."""
    cells = [f"{measured[0].search:8s} {measured[0].batch_size:5d}"]
    for m in measured:
        cells.append(f"{m.sentences_per_second:11.1f} {'-' if m.bleu is None else f'{m.bleu:.2f}':>6s}")
    cells += [f"{m.sentences_per_second / measured[0].sentences_per_second:10.2f}" for m in measured[1:]]
    return "  ".join(cells)


def table_header(precisions: list[str]) -> str:
    cells = [f"{'search':8s} {'batch':>5s}", *(f"{p + ' sent/s':>11s} {p + ' BLEU':>6s}" for p in precisions)]
    return "  ".join(cells + [f"{p + '/' + precisions[0]:>10s}" for p in precisions[1:]])


def matmul_line(trained, devices: set[torch.device]) -> str:
    """The devices' measured matrix-product rates on the model's shapes: the ceiling its speed is read against."""
    settings = read(ModelSettings, with_defaults(ModelSettings, trained.config["model"]), "model")  # older files too
    shapes = model_shapes(settings, len(trained.target_tokenizer), trained.config["data"]["batch_tokens"])
    rates = []
    for device in sorted((d for d in devices if d.type in ("cpu", "cuda")), key=str):  # not a test's meta device
        dtypes = [torch.float32, *([torch.bfloat16] if bf16_matmul(device) else [])]
        rates += [f"{str(dtype).removeprefix('torch.')} on {device} {matmul_rate(shapes, dtype, device) / 1e9:.0f}"
                  for dtype in dtypes]  # fmt: skip
    return f"matrix products (torch.mm, GFLOP/s): {', '.join(rates) or 'no device measured'}"


def translators_at(
    trained: TranslationModel, decode: DictConfig, batch_size: int, devices: dict[str, torch.device]
) -> dict[str, Translator]:
    """One ``Translator`` per precision, each on its own device, decoding ``batch_size`` sentences at a time."""
    settings = OmegaConf.merge(decode, {"batch_size": batch_size})
    return {precision: Translator(trained, settings, device, PRECISIONS[precision]) for precision, device in
            devices.items()}  # fmt: skip


def fastest_runs(
    translators: dict[str, Translator], repeats: int, run: Callable[..., tuple[float, Any]]
) -> dict[str, tuple[float, Any]]:
    """Each precision's fastest of ``repeats`` runs, the precisions taking turns (the first run of each warms up)."""
    fastest: dict[str, tuple[float, Any]] = {}
    for repeat in range(repeats):
        for precision, translator in translators.items():
            speed, result = run(translator, warm_up=repeat == 0)
            if precision not in fastest or speed > fastest[precision][0]:
                fastest[precision] = speed, result
    return fastest


def bench_decode(cfg: DictConfig) -> list[Measurement]:
    """Every search, batch size and precision, then scoring the references at each batch size; the precisions
    alternate ``repeats`` times, so the machine's drift touches each alike, and each keeps its fastest run (the one
    least disturbed by the rest of the machine)."""
    check_command(BenchSettings, cfg)
    use_threads(cfg.threads)
    devices = {precision: pick_device(cfg.device, PRECISIONS[precision]) for precision in cfg.precisions}
    trained = load_models(cfg.checkpoint)
    pairs = corpus_split(trained, cfg.split, cfg.paths)[: cfg.sentences]
    sources, references = [source for source, _ in pairs], [reference for _, reference in pairs]
    on = ", ".join(f"{precision} on {device}" for precision, device in devices.items())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {on}; {len(sources)} {cfg.split} sentences, "
          f"{min(cfg.single, len(sources))} of them one at a time")  # fmt: skip
    print(matmul_line(trained, set(devices.values())), flush=True)
    print(table_header(list(cfg.precisions)), flush=True)
    measurements = []
    for name, decode in cfg.searches.items():
        for batch_size in [*cfg.batch_sizes, 1]:
            subset = sources[: cfg.single] if batch_size == 1 else sources
            translators = translators_at(trained, decode, batch_size, devices)
            fastest = fastest_runs(translators, cfg.repeats, partial(timed_translation, sources=subset))
            row = [
                Measurement(name, batch_size, precision, speed,
                            None if batch_size == 1 else corpus_scores(translations, references)["bleu"])
                for precision, (speed, translations) in fastest.items()
            ]  # fmt: skip
            print(table_row(row), flush=True)
            measurements += row
    print("score: the references' log-probabilities by teacher forcing, no search (pairs/s)", flush=True)
    for batch_size in cfg.batch_sizes:
        translators = translators_at(trained, SCORING, batch_size, devices)
        fastest = fastest_runs(translators, cfg.repeats, partial(timed_scoring, pairs=pairs))
        row = [Measurement("score", batch_size, precision, speed, None) for precision, (speed, _) in fastest.items()]
        print(table_row(row), flush=True)
        measurements += row
    return measurements


@command("bench")
def main(cfg: DictConfig) -> None:
    log_to_stderr()
    bench_decode(cfg)


if __name__ == "__main__":
    main()
