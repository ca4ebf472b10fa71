#!/usr/bin/env bash
# Session 7, call 2 (right after call 1): ncu of the new large-M kernel (qkv M = 4096) and of
# the small-M kernel at M = 1 (gate_up), and the SwiGLU input kernel at B = 256 unpermuted.
cd "$(dirname "$0")/../.."
L=/tmp/o2; mkdir -p $L
pack() { tar czf $OUT/session7-ncu.tgz -C /tmp o2; }
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
timeout 120 ncu -k regex:w4ax_large_m --launch-skip 3 --launch-count 1 $S ./dist/comet bench gemm --models 8b --layers qkv --m 4096 --kernel large-m --no-baseline > $L/ncu-large-m.txt 2>&1; echo "ncu large rc $?"; grep -E "w4ax_large|  Duration|Issue Slots Busy|No Eligible|Achieved Occupancy|Executed Ipc A" $L/ncu-large-m.txt | head -8; pack
timeout 100 ncu -k regex:w4ax_small_m --launch-skip 3 --launch-count 1 $S ./dist/comet bench gemm --models 8b --layers gate_up --m 1 --kernel small-m --no-baseline > $L/ncu-small-m.txt 2>&1; echo "ncu small rc $?"; grep -E "w4ax_small|  Duration|DRAM Throughput|Memory Throughput|No Eligible|Achieved Occupancy" $L/ncu-small-m.txt | head -8; pack
timeout 100 ncu -k regex:swiglu_quantize_tiled --launch-skip 2 --launch-count 1 $S ./dist/comet bench decode --batch 256 --steps 1 --no-baseline > $L/ncu-swiglu.txt 2>&1; echo "ncu swiglu rc $?"; grep -E "swiglu|  Duration|DRAM Throughput|No Eligible|Achieved Occupancy" $L/ncu-swiglu.txt | head -6; pack
timeout 90 ./dist/comet bench attention > $L/attention.txt 2>&1; echo "attention rc $?"; tail -14 $L/attention.txt; pack
