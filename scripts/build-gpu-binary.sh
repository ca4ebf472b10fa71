#!/usr/bin/env bash
# Builds the stripped, statically linked release binary into dist/comet (git-ignored), ready
# to travel to the GPU machine, which has CUDA but no Swift. Prints its size.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --product comet
mkdir -p dist
cp "$(swift build -c release --static-swift-stdlib --show-bin-path)/comet" dist/comet
strip dist/comet
size=$(stat -c %s dist/comet)
echo "dist/comet: $((size / 1024 / 1024)) MiB"
if [ "$size" -gt $((40 * 1024 * 1024)) ]; then
  echo "error: dist/comet is over 40 MiB; keep full Foundation out of the binary" >&2
  exit 1
fi
