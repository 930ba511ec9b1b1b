#!/usr/bin/env bash
# The Python of denorm's scripts: a virtual environment of its own, cached under $DENORM_TOOLS
# (default ~/.local/share/denorm, beside the broker) and made once from scripts/requirements.txt,
# so that nothing is installed into the system's Python.
#
#   scripts/python.sh ARGS...     runs python ARGS in it (making it first when missing or when
#                                 scripts/requirements.txt changed)
#
# Everything it caches is rebuilt from PyPI.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
TOOLS=${DENORM_TOOLS:-$HOME/.local/share/denorm}
VENV=$TOOLS/venv
REQUIREMENTS=$here/requirements.txt
stamp=$(sha256sum "$REQUIREMENTS" | cut -c1-16)

ready() { [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements" 2>/dev/null)" = "$stamp" ]; }

if ! ready; then
  mkdir -p "$TOOLS"
  # One maker at a time (tests and benchmarks may ask at once).
  exec 9>"$TOOLS/venv.lock"
  flock 9
  if ! ready; then
    echo "python.sh: making the Python environment $VENV from scripts/requirements.txt (once)" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    echo "$stamp" > "$VENV/.requirements"
  fi
  exec 9>&-
fi
exec "$VENV/bin/python" "$@"
