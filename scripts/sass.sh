#!/usr/bin/env bash
# A kernel's machine code without a GPU: compiles every kernel unit through comet's own NVRTC
# path (`comet kernels compile`, the cubins the GPU would load) and disassembles one with
# cuobjdump (and the nvdisasm it runs) from NVIDIA's pip wheels. Then prints, per function, the
# counts that have told us the most so far: wgmma issues and waits (IGMMA, WARPGROUP.DEPBAR: one
# wait per wgmma means ptxas serialised them), tensor-core mma (IMMA/HMMA), shared (LDS/STS)
# against generic (LD/ST) memory operations, and int-to-float conversions (I2F). Spills:
# `comet kernels compile --resources`.
#
# Usage: scripts/sass.sh UNIT [ARCH] [FUNCTION]
#   scripts/sass.sh w4ax_gemm_sm90                  # summary of every function, sm_90a
#   scripts/sass.sh w4ax_gemm sm_90a w4ax_small_m_bs128_mt1_nt2_w8   # that function's SASS too
# Needs `swift build` (.build/debug/comet) and the virtualenv of scripts/test.sh (NVRTC).
set -euo pipefail
cd "$(dirname "$0")/.."
unit=${1:?usage: scripts/sass.sh UNIT [ARCH] [FUNCTION]}
arch=${2:-sm_90a}
function=${3:-}
venv="${COMET_VENV:-$PWD/.venv}"
tools="$venv/lib/python3*/site-packages/nvidia/cu13/bin"
cuobjdump="$tools/cuobjdump"
# shellcheck disable=SC2086
if ! ls $cuobjdump $tools/nvdisasm > /dev/null 2>&1; then
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "nvidia-cuda-cuobjdump==13.2.78" "nvidia-cuda-nvdisasm==13.2.78"
fi
cuobjdump=$(ls $cuobjdump | head -1)
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$(dirname "$cuobjdump"):$PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.build/debug/comet kernels compile --cache-dir "$work" --arch "$arch" > "$work/log.txt" 2>&1 || { cat "$work/log.txt"; exit 1; }
grep -E "Potential Performance Loss" "$work/log.txt" || true
cubin=$(ls "$work"/"$unit"-"$arch"-*.cubin 2> /dev/null | head -1)
[ -n "$cubin" ] || { echo "no unit $unit.cu for $arch" >&2; exit 1; }
"$cuobjdump" -sass "$cubin" > "$work/all.sass"

# Per function: name and instruction counts.
awk '
  /Function : / { if (name) report(); name = $3; delete n; next }
  /^ +\/\*[0-9a-f]+\*\// {
    op = $2; if (op ~ /^@/) op = $3; sub(/\..*/, "", op)
    n[op]++; n["all"]++
    if ($0 ~ /WARPGROUP\.DEPBAR/) n["WGWAIT"]++
  }
  function report() {
    printf "%-52s %6d instr  IGMMA %3d  wgmma waits %3d  IMMA %3d  HMMA %3d  LDS %4d  STS %4d  LD %4d  ST %4d  I2F %4d\n",
      name, n["all"], n["IGMMA"], n["WGWAIT"], n["IMMA"], n["HMMA"], n["LDS"], n["STS"], n["LD"], n["ST"], n["I2F"] + n["I2FP"]
  }
  END { if (name) report() }
' "$work/all.sass"

if [ -n "$function" ]; then
  awk -v f="$function" '/Function : /{ on = ($3 == f); } on' "$work/all.sass"
fi
