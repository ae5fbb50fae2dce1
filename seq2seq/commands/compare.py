"""``python -m seq2seq.compare sweep=DIR``: one table and one plot from every run of a sweep.

Writes ``comparison.csv`` (a row per run), ``comparison.md`` (a row per cell, mean ± standard deviation
over seeds, best first) and ``comparison.png`` into the sweep directory, and prints the markdown table. The
settings compared are the config keys whose values differ between runs; a sweep still running gives
partial results, marked as such.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seq2seq.commands.common import command
from seq2seq.plotting import pyplot
from seq2seq.settings import CompareSettings, check_command

# seeds are averaged over; the rest are names, places and bookkeeping, not settings
IGNORED = {"seed", "name", "resume", "paths.runs_dir", "paths.cache_dir", "paths.mirror", "data.cache_dir",
           "data.mirror"}  # fmt: skip
METRICS = {"bleu_greedy": ("greedy", "bleu"), "bleu_beam": ("beam", "bleu"), "chrf_greedy": ("greedy", "chrf")}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_runs(sweep_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Finished runs' summaries, and how many runs have started (a ``.hydra`` folder) in all."""
    started = len(list(sweep_dir.glob("**/.hydra/config.yaml")))
    runs = [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("**/test_metrics.json"))]
    return runs, max(started, len(runs))


def swept_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose values differ between runs (paths and seeds aside)."""
    keys = sorted(set().union(*configs))
    varying = [k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]
    return [k for k in varying if k not in IGNORED]


def shown(value: Any) -> Any:
    """A setting's value as a table cell: a list or a mapping (``trainer.callbacks``) as its JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def run_rows(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    configs = [flatten(run["config"]) for run in runs]
    keys = swept_keys(configs)
    rows = []
    for run, config in zip(runs, configs):
        row = {key: shown(config.get(key)) for key in keys}
        row["seed"] = config.get("seed")
        row.update({name: round(run["test"][search][metric], 2) for name, (search, metric) in METRICS.items()})
        row["valid_bleu_curve"] = " ".join(f"{step}:{bleu}" for step, bleu in run["validation_bleu_curve"])
        row.update(steps=run["steps"], wall_seconds=run["wall_seconds"], hardware=run["hardware"], run=run["run_dir"])
        rows.append(row)
    return rows, keys


def cell_rows(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Rows grouped by their swept settings, with mean and standard deviation over seeds, best first."""
    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        cells[tuple(row[k] for k in keys)].append(row)
    summary = []
    for settings, members in cells.items():
        cell = dict(zip(keys, settings), seeds=len(members))
        for name in METRICS:
            values = [m[name] for m in members]
            cell[name] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        summary.append(cell)
    return sorted(summary, key=lambda c: -c["bleu_greedy"][0])


def markdown(cells: list[dict[str, Any]], keys: list[str], note: str) -> str:
    names = [k.removeprefix("model.").removeprefix("encoder.") for k in keys]
    header = [*names, "seeds", "test BLEU greedy", "test BLEU beam 5", "test chrF greedy"]
    lines = [note, "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for cell in cells:
        values = [str(cell[k]) for k in keys] + [str(cell["seeds"])]
        values += [f"{cell[m][0]:.2f} ± {cell[m][1]:.2f}" for m in METRICS]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot(cells: list[dict[str, Any]], keys: list[str], path: Path) -> None:
    """BLEU by context mode, one bar group per combination of the other settings, with error bars."""
    plt = pyplot()
    if not keys:  # every run of one setting (a sweep of seeds, or its first run so far): one bar of them all
        keys, cells = ["runs"], [{**cell, "runs": "all"} for cell in cells]
    x_key = "model.context" if "model.context" in keys else keys[0]
    others = [k for k in keys if k != x_key]
    x_values = sorted({c[x_key] for c in cells}, key=str)
    groups = sorted({tuple(c[k] for k in others) for c in cells}, key=str)
    width = 0.8 / max(len(groups), 1)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(x_values) * max(1, len(groups)) / 2), 4.5))
    for g, group in enumerate(groups):
        by_x = {c[x_key]: c["bleu_greedy"] for c in cells if tuple(c[k] for k in others) == group}
        means = [by_x.get(x, (0.0, 0.0))[0] for x in x_values]
        errors = [by_x.get(x, (0.0, 0.0))[1] for x in x_values]
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, group)) or "all"
        positions = [i + (g - (len(groups) - 1) / 2) * width for i in range(len(x_values))]
        axes.bar(positions, means, width, yerr=errors, capsize=3, label=label)
    axes.set_xticks(range(len(x_values)), [str(x) for x in x_values])
    axes.set_xlabel(x_key)
    axes.set_ylabel("test BLEU (greedy), mean ± sd over seeds")
    axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def sweep_command(sweep_dir: Path) -> str:
    multirun = sweep_dir / "multirun.yaml"
    if not multirun.is_file():
        return "unknown"
    overrides = OmegaConf.load(multirun).hydra.overrides.task
    return "python -m seq2seq.train -m " + " ".join(overrides)


def compare(sweep_dir: Path) -> str:
    """Write the three reports into ``sweep_dir`` and return the markdown table."""
    runs, started = load_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"{sweep_dir}: no finished runs (no test_metrics.json); is this a sweep directory?")
    rows, keys = run_rows(runs)
    with open(sweep_dir / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cells = cell_rows(rows, keys)
    status = "complete" if len(runs) == started else f"PARTIAL: {len(runs)} of {started} started runs finished"
    hardware = sorted({r["hardware"] for r in rows})
    note = (
        f"{len(runs)} runs ({status}) on {', '.join(hardware)}; "
        f"{'/'.join(sorted({str(r['steps']) for r in rows}))} steps; command: `{sweep_command(sweep_dir)}`"
    )
    table = markdown(cells, keys, note)
    (sweep_dir / "comparison.md").write_text(table)
    plot(cells, keys, sweep_dir / "comparison.png")
    return table


@command("compare")
def main(cfg: DictConfig) -> None:
    check_command(CompareSettings, cfg)
    print(compare(Path(cfg.sweep)))


if __name__ == "__main__":
    main()
