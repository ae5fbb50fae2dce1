#!/usr/bin/env bash
# The packages the device machine lacks (it has torch, lightning, sentencepiece, sacrebleu, joblib, matplotlib, but
# no Hydra), as wheels in .whl/ for `run` to carry, and the corpus in .data/: that machine reaches no network.
# Run once, here, in the repository root (both folders are git-ignored through .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude=$(git rev-parse --git-path info/exclude)
grep -qx '/.whl/' "$exclude" || echo /.whl/ >> "$exclude"
grep -qx '/.data/' "$exclude" || echo /.data/ >> "$exclude"
mkdir -p .whl .data
cp "${SEQ2SEQ_MIRROR:?name the folder holding fra-eng.zip}/fra-eng.zip" .data/
# antlr4's 4.9.3 (omegaconf pins 4.9.*) is published as a source archive only: build its wheel here
python3 -m pip wheel --no-deps -q -w .whl hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 \
  hydra-joblib-launcher==1.2.0
ls -la .whl .data
