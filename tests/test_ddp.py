"""Two CPU processes with the gloo backend: distinct batches, whole-split validation, one checkpoint writer."""

import json
import os
import subprocess
import sys

import pytest
from helpers.runs import MIRROR, TINY, config, run_tool, tutorial_mirror

from seq2seq.commands import evaluate
from seq2seq.data.prepare import load_splits

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MIRROR / "fra-eng.zip").is_file(), reason=f"no corpus mirror at {MIRROR}"),
]

STEPS, EVERY = 20, 10
ODD_VALID = "data.valid_fraction=0.01"  # 143 sentences: the two ranks' shares differ by one
DDP = [
    *(o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval", "trainer.limit_val"))),
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={EVERY}",
    "trainer.limit_val_batches=1.0",
    ODD_VALID,
    "test_decode.beam_size=1",  # the end-of-training beam score is not this test's: a cheaper one
]


def test_ddp_on_two_processes_scores_the_whole_validation_split_once(tmp_path, corpus_cache):
    env = {**os.environ, "SEQ2SEQ_MIRROR": str(tutorial_mirror()), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq.train", *DDP, f"data.cache_dir={corpus_cache}",
         f"paths.runs_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (summary_file,) = (tmp_path / "runs").glob("*/*/test_metrics.json")  # written once, by rank 0
    summary = json.loads(summary_file.read_text())
    assert summary["steps"] == STEPS and [step for step, _ in summary["validation_bleu_curve"]] == [EVERY, STEPS]
    written = sorted(p.name for p in summary_file.parent.glob("checkpoints/*"))  # each once, by rank 0
    assert written == ["best.ckpt", "last.ckpt", f"step{EVERY:06d}.ckpt", f"step{STEPS:06d}.ckpt"]

    # the BLEU the two ranks computed together equals one process decoding the whole split with those weights
    run_tool(evaluate, f"checkpoint={summary['best_checkpoint']}", "split=valid", f"output_dir={tmp_path}",
             f"paths.cache_dir={corpus_cache}", f"paths.mirror={tutorial_mirror()}")  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())["best.valid.greedy"]
    assert metrics["sentences"] == len(load_splits(config(corpus_cache, ODD_VALID).data)["valid"]) == 143
    assert metrics["bleu"] == pytest.approx(summary["valid_bleu"], abs=1e-9)
