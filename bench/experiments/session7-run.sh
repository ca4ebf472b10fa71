#!/usr/bin/env bash
# Session 7 plan for the next GPU call (not run: no device was lent). On this machine first:
#   git apply bench/experiments/session7-gemm-pipeline-and-fold.patch && scripts/build-gpu-binary.sh
#   mkdir -p dist2 && cp <a build of main before the patch> dist2/comet-before
# then run this on the GPU machine with carry [dist, dist2] (both binaries fit in 64 MiB), and
# bench/experiments/session7-ncu.sh right after it while the machine is warm.
# Session 7, call 1: whole check of the new tree (large-M wgmma pipeline unserialised, three
# int->float conversions, a persistent schedule; down_proj's permutation folded into gate_up
# rows; fast SiLU), the large-M GEMM in each conversion and schedule against the before binary,
# decode steps with profiles.
cd "$(dirname "$0")/../.."
L=/tmp/o; mkdir -p $L
pack() { tar czf $OUT/session7-run.tgz -C /tmp o; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > $L/gpu.txt; cat $L/gpu.txt
timeout 200 ./dist/comet check-gpu > $L/check.txt 2>&1; echo "check rc $?"; grep -E "^FAIL|passed" $L/check.txt | cut -c1-600; pack
for c in mixed i2f magic; do
  nb=--no-baseline; [ $c = mixed ] && nb=
  timeout 60 ./dist/comet bench gemm --models 8b --m 256,1024,4096 --kernel large-m --large-m-conversion $c $nb --json $L/gemm-$c.json > $L/gemm-$c.txt 2>&1; echo "gemm $c rc $?"; grep -E "^llama3-8b" $L/gemm-$c.txt
done
timeout 60 ./dist/comet bench gemm --models 8b --m 256,1024,4096 --kernel large-m --large-m-schedule persistent --no-baseline --json $L/gemm-persistent.json > $L/gemm-persistent.txt 2>&1; echo "gemm persistent rc $?"; grep -E "^llama3-8b" $L/gemm-persistent.txt; pack
timeout 50 ./dist2/comet-before bench gemm --models 8b --m 256,1024,4096 --kernel large-m --no-baseline --json $L/gemm-before.json > $L/gemm-before.txt 2>&1; echo "before rc $?"; grep -E "^llama3-8b" $L/gemm-before.txt; pack
timeout 120 ./dist/comet bench decode --batch 1,16,64,256 --profile --json $L/decode.json > $L/decode.txt 2>&1; echo "decode rc $?"; grep -E "^llama3-8b" $L/decode.txt | tail -4; pack
timeout 70 ./dist2/comet-before bench decode --batch 1,16,64,256 --no-baseline --profile --json $L/decode-before.json > $L/decode-before.txt 2>&1; echo "before rc $?"; grep -E "^llama3-8b" $L/decode-before.txt | tail -4; pack
