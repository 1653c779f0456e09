#!/usr/bin/env bash
# Installs uv from PyPI (the only registry we may use) when it is not on PATH.
set -euo pipefail
command -v uv >/dev/null 2>&1 && exit 0
[ -x "$HOME/.local/bin/uv" ] && exit 0
echo "installing uv from PyPI into ~/.local/bin"
python3 -m pip install --quiet --user uv || python3 -m pip install --quiet --user --break-system-packages uv
