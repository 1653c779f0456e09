#!/usr/bin/env bash
# `make check-artifacts`: the published artefacts are what the code says, and valid.
#   1. docs/asyncapi.yaml is what scripts/asyncapi.py generates from libs/common (else: make asyncapi)
#   2. docs/openapi/<service>.json is what scripts/openapi.py generates from the apps (else: make openapi)
#   3. docs/asyncapi.yaml is valid for the AsyncAPI project's parser, and every example matches its schemas
#   4. the Helm chart lints, renders in several configurations, and validates (scripts/checks/chart.py)
#   5. docker-compose.yml runs the entry points and settings the code has (scripts/checks/compose.py)
#   6. the Dockerfile passes hadolint
#   7. the hand-written docs name every event type, topic and KPI of the code (scripts/checks/docs.py)
# Tools install once into ~/.cache/advocacy (scripts/checks/tools.sh); everything runs offline after that.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never
UV=${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}
started=$(date +%s)
failed=()

step() {  # step NAME COMMAND...
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name"
  if "$@"; then echo "   ok ($((SECONDS - t0)) s)"; else echo "   FAILED: $name"; failed+=("$name"); fi
}

eval "$(bash scripts/checks/tools.sh)"
py() { "$UV" run --frozen --quiet python "$@"; }

step "asyncapi is up to date" py scripts/asyncapi.py --check
step "openapi is up to date" py scripts/openapi.py --check
step "asyncapi is valid (@asyncapi/parser)" env NODE_MODULES="$NODE_MODULES" node scripts/checks/validate-asyncapi.cjs docs/asyncapi.yaml
step "helm chart" py scripts/checks/chart.py --helm "$HELM" --node-modules "$NODE_MODULES" --strimzi-crds "$STRIMZI_CRDS"
step "docker-compose wiring" py scripts/checks/compose.py
step "hadolint Dockerfile" "$UV" run --frozen --quiet hadolint Dockerfile
step "docs match the code" py scripts/checks/docs.py

echo "check-artifacts: $((7 - ${#failed[@]})) passed, ${#failed[@]} failed in $(( $(date +%s) - started )) s"
if ((${#failed[@]})); then printf '  failed: %s\n' "${failed[@]}"; exit 1; fi
