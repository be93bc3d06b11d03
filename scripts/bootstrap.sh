# Sourced by scripts/demo.sh and scripts/test.sh: make (or reuse) .venv and install the
# project into it with the extras named in $EXTRAS. Works on a fresh Debian with Python 3.11.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "sysdesign-kit needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian splits venv/ensurepip into python3-venv.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else
    echo "python3-venv is missing: sudo apt-get install python3-venv" >&2
    exit 2
  fi
fi
venv="$root/.venv"
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
stamp="$venv/.installed-$EXTRAS-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$venv/bin/python" -m pip install -q -e ".[$EXTRAS]"
  rm -f "$venv"/.installed-* && touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
