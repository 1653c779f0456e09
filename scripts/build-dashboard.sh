#!/usr/bin/env bash
# Vendors the dashboard's charting library (Chart.js, from npm, at the version pinned by
# services/metrics/dashboard/package-lock.json) into the metrics package's static files.
# The copy is not committed (.gitignore): this script makes it, for `make up`, the tests and the image.
# Idempotent: does nothing when the copy is newer than the lock file.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC="$ROOT/services/metrics/dashboard"
VENDOR="$ROOT/services/metrics/src/metrics/dashboard_files/vendor"
TARGET="$VENDOR/chart.umd.js"
[ -f "$TARGET" ] && [ "$TARGET" -nt "$SRC/package-lock.json" ] && exit 0
command -v npm >/dev/null 2>&1 || { echo "npm is needed to build the dashboard (apt-get install -y npm)" >&2; exit 1; }
(cd "$SRC" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
mkdir -p "$VENDOR"
cp "$SRC/node_modules/chart.js/dist/chart.umd.js" "$TARGET"
cp "$SRC/node_modules/chart.js/LICENSE.md" "$VENDOR/chart.js-LICENSE.md"
echo "dashboard: vendored chart.js $(node -p "require('$SRC/node_modules/chart.js/package.json').version" 2>/dev/null || echo '')"
