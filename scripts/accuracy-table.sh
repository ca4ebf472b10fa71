#!/usr/bin/env bash
# Reproduces the accuracy table of bench/results/accuracy-smollm2.md: FP, the baselines and the FMPQ
# variants of SmolLM2-135M on the held-out WEB split (Romans-Revelation), every row on the same
# evaluation tokens and the same calibration pass (WEB Genesis-Acts), CPU, release build.
#   EVAL_TOKENS (default 16384), CTX (512), CAL_SEQS (64), CAL_LEN (512), ROWS (all; comma-separated)
# Needs scripts/fetch-test-assets.sh and scripts/fetch-eval-text.sh first. Takes long on a small
# machine (each row is a full perplexity run): run it under nohup and read the output as rows finish.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product comet >&2
args=(--max-tokens "${EVAL_TOKENS:-16384}" --ctx "${CTX:-512}"
      --calibration-sequences "${CAL_SEQS:-64}" --calibration-length "${CAL_LEN:-512}")
if [ -n "${ROWS:-}" ]; then args+=(--rows "$ROWS"); fi
exec .build/release/comet eval table "${args[@]}"
