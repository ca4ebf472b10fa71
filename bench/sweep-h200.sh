#!/usr/bin/env bash
# The GPU sweep run on the H200 for bench/results (one device call): every GPU check, the GEMM
# table, whole decode steps and offline throughput, W4AxKV4 against bf16 in the same run.
# Usage (on the GPU machine, from the repository root, dist/comet built by
# scripts/build-gpu-binary.sh): bench/sweep-h200.sh OUTDIR [STEPS]; STEPS is a subset of
# "check gemm decode throughput tp" (default: all; tp, the Llama-3-70B shape at TP=1 and TP=2/4,
# needs a machine of several GPUs). Everything lands in OUTDIR.tgz (the device
# tool brings back a limited number of files).
set -uo pipefail
out=${1:?usage: bench/sweep-h200.sh OUTDIR [STEPS]}
steps=${2:-check gemm decode throughput tp}
gpus=$(nvidia-smi -L | wc -l)
mkdir -p "$out"
want() { [[ " $steps " == *" $1 "* ]]; }
comet=./dist/comet
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$out/gpu.txt"
want check && timeout 300 $comet check-gpu > "$out/check-gpu.txt" 2>&1; want check && { tail -1 "$out/check-gpu.txt"; grep -E "^FAIL" "$out/check-gpu.txt" | cut -c1-600; }
want gemm && timeout 120 $comet bench gemm --models 8b --json "$out/gemm-8b.json" > "$out/gemm-8b.txt" 2>&1
want decode && timeout 90 $comet bench decode --synthetic llama3-8b --json "$out/decode-8b.json" > "$out/decode-8b.txt" 2>&1
want throughput && for kind in w4axkv4 bf16; do
  flag=""; [ "$kind" = bf16 ] && flag="--bf16"
  timeout 150 $comet bench throughput --backend gpu --synthetic llama3-8b $flag --requests 64 --input-len 1000 \
    --output-len 1000 --max-batch 64 --step-tokens 2048 --json "$out/throughput-8b-$kind.json" \
    > "$out/throughput-8b-$kind.txt" 2>&1; echo "throughput $kind rc $?"; tail -n 5 "$out/throughput-8b-$kind.txt"
done
want tp && for tp in 1 2 4; do
  [ "$tp" -le "$gpus" ] || continue
  timeout 240 $comet bench decode --synthetic llama3-70b --tensor-parallel $tp --batch 1,16,64,256 \
    --json "$out/decode-70b-tp$tp.json" > "$out/decode-70b-tp$tp.txt" 2>&1; echo "decode 70b tp$tp rc $?"; tail -n 6 "$out/decode-70b-tp$tp.txt"
  timeout 200 $comet bench throughput --backend gpu --synthetic llama3-70b --tensor-parallel $tp --requests 64 --input-len 1000 \
    --output-len 1000 --max-batch 64 --step-tokens 2048 --json "$out/throughput-70b-tp$tp.json" \
    > "$out/throughput-70b-tp$tp.txt" 2>&1; echo "throughput 70b tp$tp rc $?"; tail -n 5 "$out/throughput-70b-tp$tp.txt"
done
tar czf "$out.tgz" -C "$out" .
