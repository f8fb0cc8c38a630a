#!/usr/bin/env bash
# Install photoctl into ./.venv and run the main job on sample photos with the embedded
# defaults (SQLite in ./photoctl-data, local face engine): ingest, work, stats.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e .
.venv/bin/python scripts/make_sample_photos.py sample-photos
.venv/bin/photoctl init   # read-only commands such as `users list` never create a database
# A participant enrolled with one photo is then found in the others (token saved, not shown).
.venv/bin/photoctl users list | grep -q '^demo ' \
    || .venv/bin/photoctl users add demo --selfie tests/data/obama_1.jpg > photoctl-data/demo.token
.venv/bin/photoctl ingest sample-photos --album "Sample event"
.venv/bin/photoctl work -n 2 --until-empty
.venv/bin/photoctl stats
.venv/bin/photoctl users list
