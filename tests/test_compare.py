"""The sweep report: per-run CSV, per-cell mean ± sd table, plot, and partial sweeps."""

import csv
import json
import statistics

import pytest

from seq2seq.commands.compare import compare

BLEU = {("h_n", True): [30.0, 32.0, 31.0], ("zero", True): [20.0, 21.0, 25.0], ("h_n", False): [28.0, 27.5, 27.0]}


def write_run(directory, context, packed, seed, bleu):
    directory.mkdir(parents=True)
    (directory / ".hydra").mkdir()
    (directory / ".hydra" / "config.yaml").write_text("name: x\n")
    config = {
        "name": "sweep",
        "seed": seed,
        "model": {"context": context, "encoder": {"packed": packed, "hidden_size": 8}},
        "data": {"cache_dir": f"/tmp/{seed}"},
    }
    summary = {
        "run_dir": str(directory),
        "config": config,
        "test": {"greedy": {"bleu": bleu, "chrf": bleu + 20}, "beam": {"bleu": bleu + 1, "chrf": bleu + 21}},
        "validation_bleu_curve": [[100, bleu - 5], [200, bleu]],
        "steps": 200,
        "wall_seconds": 12.5,
        "hardware": "test CPU",
    }
    (directory / "test_metrics.json").write_text(json.dumps(summary))


@pytest.fixture
def sweep(tmp_path):
    job = 0
    for (context, packed), scores in BLEU.items():
        for seed, bleu in enumerate(scores, 1):
            write_run(tmp_path / str(job), context, packed, seed, bleu)
            job += 1
    return tmp_path


def test_reports_one_row_per_run_and_one_per_cell(sweep):
    table = compare(sweep)
    with open(sweep / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    assert {"model.context", "model.encoder.packed", "seed", "bleu_greedy", "bleu_beam", "valid_bleu_curve"} <= set(
        rows[0]
    )
    assert "model.encoder.hidden_size" not in rows[0] and "data.cache_dir" not in rows[0]  # not swept
    lines = [line for line in table.splitlines() if line.startswith("| ") and "seeds" not in line and "---" not in line]
    assert len(lines) == 3
    best = lines[0].split(" | ")
    assert best[0] == "| h_n" and best[1] == "True" and best[3] == f"31.00 ± {statistics.stdev([30, 32, 31]):.2f}"
    assert [line.split(" | ")[0] for line in lines] == ["| h_n", "| h_n", "| zero"]  # sorted by mean BLEU
    assert "complete" in table and "test CPU" in table
    assert (sweep / "comparison.md").read_text() == table
    assert (sweep / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_running_sweep_gives_partial_results(sweep):
    (sweep / "99" / ".hydra").mkdir(parents=True)
    (sweep / "99" / ".hydra" / "config.yaml").write_text("name: x\n")
    assert "PARTIAL: 9 of 10" in compare(sweep)


def test_an_empty_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        compare(tmp_path)


def test_runs_of_one_setting_seeds_only_or_the_first_run_so_far_are_one_cell_and_one_bar(tmp_path):
    for seed, bleu in enumerate([30.0, 32.0], 1):
        write_run(tmp_path / str(seed), "h_n", True, seed, bleu)
    table = compare(tmp_path)
    [cell] = [line for line in table.splitlines() if line.startswith("| ") and not {"seeds", "---"} & set(line.split())]
    assert cell.startswith("| 2 | 31.00 ± ")  # no setting differs: only the seeds column and the scores
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_swept_list_setting_is_a_column_of_its_json(tmp_path):
    for job, callbacks in enumerate([[], [{"_target_": "my.Callback"}]]):
        write_run(tmp_path / str(job), "h_n", True, 1, 30.0 + job)
        summary = json.loads((tmp_path / str(job) / "test_metrics.json").read_text())
        summary["config"]["trainer"] = {"callbacks": callbacks}
        (tmp_path / str(job) / "test_metrics.json").write_text(json.dumps(summary))
    compare(tmp_path)
    with open(tmp_path / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["trainer.callbacks"] for row in rows) == ["[]", '[{"_target_": "my.Callback"}]']
