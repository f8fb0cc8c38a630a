#!/usr/bin/env bash
# Install photoctl with its test needs into ./.venv and run the whole suite, slow tests
# included. PostgreSQL tests use PHOTOCTL_TEST_POSTGRES_URL (default
# postgresql://postgres@127.0.0.1:5432/postgres) and are skipped only where no server answers,
# never when CI is set. Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
# Tests run in PHOTOCTL_TEST_PROCESSES pytest-xdist processes (default: two more than the cores,
# since many tests spend their time waiting on the processes they start, on rate limits or on
# sleeps; 0 runs them in this process, which is what to use with -x or --pdb).
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests drive Debian's headless Chromium through its chromedriver (selenium); the
# poster test rasterises the PDF poster with poppler's pdftoppm to read its QR code back.
# Installed here when missing, without questions (CI runs as root; elsewhere sudo may ask).
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver || ! -x /usr/bin/pdftoppm ]]; then
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium chromium-driver poppler-utils
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
.venv/bin/ruff check photoctl tests testkit scripts
.venv/bin/ruff format --check photoctl tests testkit scripts
# Types: the [tool.mypy] section of pyproject.toml says what is checked, and how strictly.
.venv/bin/mypy
# Every process the tests start (workers, servers) imports photoctl from this checkout: let
# Python keep its bytecode (__pycache__, ignored by git) instead of compiling each module again
# in each process, as it does where PYTHONDONTWRITEBYTECODE is set.
unset PYTHONDONTWRITEBYTECODE
# Tests talk to this machine only: no EC2 instance-metadata lookups by boto3.
export AWS_EC2_METADATA_DISABLED=true
processes="${PHOTOCTL_TEST_PROCESSES:-$(($(nproc) + 2))}"
if [ "$processes" -gt 0 ]; then
    # loadgroup: tests spread one by one, except those marked xdist_group (sharing an
    # expensive module fixture), which stay in one process.
    set -- -n "$processes" --dist loadgroup "$@"
fi
.venv/bin/python -m pytest "$@"
