#!/usr/bin/env bash
# Every GPU measurement of issue 15, in one go, into one folder:
#   bench/gpu/run.sh OUT          the full-corpus runs, sized for one H200 and 16 CPU cores
#   bench/gpu/run.sh OUT --mini   the same steps in miniature on the tutorial subset, on a CPU (a few minutes)
# PARTS="grid attn bench profile" (the default) picks parts; SEQ2SEQ_MIRROR must name the folder holding fra-eng.zip.
# OUT gets summary.md, the comparison plots and results.tar.gz (every log, table and json, no checkpoints):
# the device tool returns only 8 files, 2 folders down, so the working files are packed.
#
# Sizing the grid (full): a full-corpus epoch of recipe=fra-eng is ~4.7 s (138 steps of 12,000 tokens, 0.034 s a
# step) for a 2-layer encoder alone on the GPU; fra-eng-context's 1-layer encoder is cheaper, and one such run
# leaves most of an H200 idle (small kernels, launch-bound), so 12 runs side by side (hydra.launcher.n_jobs=12,
# 1 CPU thread each, 4 cores left for the data loaders and the launcher) give ~4 runs' worth of throughput.
# 72 runs / 12 = 6 waves; at 600 steps (~4.3 epochs, validations at 300 and 600) a wave takes ~600 x 0.034 x 3
# (sharing) ~ 60 s plus ~20 s of start-up and test decoding: ~8 minutes for the grid, inside one 10-minute device
# command. fra-eng-attn (15 epochs, ~3-4 minutes), the fra-eng checkpoint for bench (15 epochs, 2m49s), the bench
# and the profile (~9 minutes together) need a second call: PARTS="attn bench profile".
set -euo pipefail
OUT=$(realpath -m "${1:?usage: bench/gpu/run.sh OUT [--mini]}")
MODE=${2:-full}
PARTS=${PARTS:-grid attn bench profile}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
cd "$HERE"
export PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
WORK=$OUT/work
export SEQ2SEQ_RUNS=$WORK/runs SEQ2SEQ_CACHE=${SEQ2SEQ_CACHE:-/tmp/seq2seq-gpu-cache}
mkdir -p "$WORK"

if [ "$MODE" = --mini ]; then
  GRID=(recipe=fra-eng-small-context model.context=h_n,zero model.encoder.bidirectional=true
        model.encoder.packed=true seed=1)
  ATTN_AXIS=(recipe=fra-eng-small-context model.attention=none,bahdanau model.context=h_n
             model.encoder.bidirectional=true model.encoder.packed=true seed=1)
  # untrained models write to the length limit: a short limit and a small test split keep their decoding short
  TINY=(data.valid_fraction=0.01 data.test_fraction=0.01 decode.max_length=8 test_decode.max_length=8
        trainer.max_steps=4 trainer.max_time=null trainer.limit_val_batches=2)
  SHORT=("${TINY[@]}" trainer.val_check_interval=4 hydra.launcher.n_jobs=1)
  THREADS=2
  ATTN=(recipe=fra-eng-small-attn "${TINY[@]}")
  FRAENG=(recipe=fra-eng-small "${TINY[@]}" trainer.val_check_interval=4 trainer.check_val_every_n_epoch=null)
  BENCH=(batch_sizes=[16] sentences=40 single=2 searches.greedy.max_length=8 searches.beam.max_length=8)
  PROFILE=(recipe=fra-eng-small "${TINY[@]}" trainer.max_steps=8 trainer.limit_val_batches=0)
  PROFILE_STEPS=(2 4)
else
  GRID=(recipe=fra-eng-context)  # its sweeper: 4 contexts x bidirectional x packed x 3 seeds
  ATTN_AXIS=(recipe=fra-eng-context model.attention=none,bahdanau model.encoder.bidirectional=true
             model.encoder.packed=true)
  SHORT=(trainer.max_steps=600 trainer.val_check_interval=300 hydra.launcher.n_jobs=12)
  THREADS=1
  ATTN=(recipe=fra-eng-attn)
  FRAENG=(recipe=fra-eng)
  BENCH=(batch_sizes=[64,256,1024])
  PROFILE=(recipe=fra-eng trainer.max_steps=60 trainer.limit_val_batches=0)
  PROFILE_STEPS=(30 20)
fi

timed() {  # timed LABEL COMMAND...: runs it, logs it, and notes its wall time
  local label=$1 start=$SECONDS
  shift
  echo "== $label: $*" | tee -a "$WORK/commands.txt"
  "$@" 2>&1 | tee "$WORK/$label.log"
  echo "$label: $((SECONDS - start)) s" | tee -a "$WORK/times.txt"
}

pack() {  # the results so far, as the few files the device tool returns
  tar -czf "$OUT/results.tar.gz" -C "$OUT" --exclude='*.ckpt' work
  cp "$WORK"/comparison-*.png "$OUT"/ 2>/dev/null || true
  {
    echo "# GPU measurements ($MODE), $(date -u +%FT%TZ)"
    echo; echo '```'; cat "$WORK/times.txt"; echo '```'
    for table in "$WORK"/comparison-*.md; do
      if [ -e "$table" ]; then echo; echo "## $(basename "$table")"; cat "$table"; fi
    done
    for file in "$WORK"/*.json "$WORK"/bench*.log; do
      if [ -e "$file" ]; then echo; echo "## $(basename "$file")"; echo '```'; cat "$file"; echo '```'; fi
    done
  } > "$OUT/summary.md"
}
trap pack EXIT
: > "$WORK/times.txt"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; python -c \
  'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'; nproc; } > "$WORK/machine.txt"

sweep_of() { ls -d "$SEQ2SEQ_RUNS/$1-sweep"/*/ | tail -1; }
compare() {  # compare NAME: the sweep's table and plot, kept as comparison-NAME.*
  local dir
  dir=$(sweep_of "$1")
  timed "compare-$1" python -m seq2seq.compare sweep="$dir"
  cp "$dir/comparison.md" "$WORK/comparison-$1.md"
  cp "$dir/comparison.csv" "$WORK/comparison-$1.csv"
  cp "$dir/comparison.png" "$WORK/comparison-$1.png" 2>/dev/null || true
}

if [[ " $PARTS " == *" grid "* ]]; then
  export OMP_NUM_THREADS=$THREADS  # each of the runs side by side (joblib's workers inherit it)
  timed grid-context python -m seq2seq.train -m "${GRID[@]}" "${SHORT[@]}" name=gpu-context
  timed grid-attention python -m seq2seq.train -m "${ATTN_AXIS[@]}" "${SHORT[@]}" name=gpu-attention
  unset OMP_NUM_THREADS
  compare gpu-context
  compare gpu-attention
  pack
fi

if [[ " $PARTS " == *" attn "* ]]; then
  timed train-attn python -m seq2seq.train "${ATTN[@]}" name=gpu-attn
  cp "$(ls "$SEQ2SEQ_RUNS"/gpu-attn/*/test_metrics.json | tail -1)" "$WORK/attn-test-metrics.json"
  pack
fi

if [[ " $PARTS " == *" bench "* ]]; then
  checkpoint=${CHECKPOINT:-}
  if [ -z "$checkpoint" ]; then
    timed train-fra-eng python -m seq2seq.train "${FRAENG[@]}" name=gpu-fra-eng
    checkpoint=$(ls "$SEQ2SEQ_RUNS"/gpu-fra-eng/*/checkpoints/best.ckpt | tail -1)
  fi
  # decode.sync_every: null (8 on a GPU) against 1 (the host asked at every step, as before issue 15)
  timed bench python -m seq2seq.bench checkpoint="$checkpoint" "${BENCH[@]}"
  timed bench-sync-every-step python -m seq2seq.bench checkpoint="$checkpoint" "${BENCH[@]}" \
    searches.greedy.sync_every=1 searches.beam.sync_every=1
  pack
fi

if [[ " $PARTS " == *" profile "* ]]; then
  timed profile python -m seq2seq.train "${PROFILE[@]}" name=gpu-profile \
    "+trainer.callbacks=[{_target_: bench.gpu.profile_steps.StepProfiler, output: '$WORK/profile', skip: ${PROFILE_STEPS[0]}, steps: ${PROFILE_STEPS[1]}}]"
  cp "$WORK/profile/profile.json" "$WORK/profile.json"
fi
