#!/usr/bin/env bash
# Makes sure a headless Chromium is on this machine, for the dashboard's browser test.
# Debian's package, never a browser download of Playwright's own (`playwright install` cannot
# reach its CDN here). Idempotent: does nothing when `chromium` is already on PATH.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing Debian's chromium (for the dashboard's browser test)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium
