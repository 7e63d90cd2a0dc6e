#!/usr/bin/env bash
# Create (or update) .venv with a Python >= 3.12 interpreter and install recloop with its test
# tools into it. Idempotent: a second call only checks that the install is current.
set -euo pipefail
cd "$(dirname "$0")/.."

is_312() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
  if [ -n "${RECLOOP_PYTHON:-}" ] && is_312 "$RECLOOP_PYTHON"; then echo "$RECLOOP_PYTHON"; return; fi
  for cand in python3.13 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && is_312 "$cand"; then command -v "$cand"; return; fi
  done
  # pyenv installs that are not on PATH: take the newest 3.12+
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.[0-9]+)?$' | sort -t. -k1,1n -k2,2n -k3,3n -r); do
      if is_312 "$root/versions/$v/bin/python3"; then echo "$root/versions/$v/bin/python3"; return; fi
    done
  fi
  return 1
}

if [ ! -x .venv/bin/python ] || ! is_312 .venv/bin/python; then
  py=$(find_python) || {
    echo "error: recloop needs Python >= 3.12 (mesa 3.5 requires it); none found on PATH or in pyenv." >&2
    echo "       Install one, or point RECLOOP_PYTHON at its interpreter." >&2
    exit 2
  }
  echo "creating .venv with $py ($("$py" --version 2>&1))" >&2
  rm -rf .venv
  "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,dashboard]"
