#!/usr/bin/env bash
# Runs the whole stack: Kafka, the database, a dev token issuer and the four
# services (api + worker each). With a Docker engine: docker compose. Without
# one: local processes (Kafka and FerretDB from infra/infra.sh, services with uv).
#   scripts/stack.sh up | down | status | tokens (the dashboard URL and a token per role, again)
# Ports: content 8101, ambassador 8102, distribution 8103, metrics 8104, issuer 8400; a second stack on
# one machine moves them with ADVOCACY_PORT_BASE (content = base + 1 ... metrics = base + 4) and ISSUER_PORT.
# After the services are ready, `up` loads the demo tenant "acme" (scripts/demo_tenant.py, idempotent) and
# starts its live trickle; DEMO_TENANT=0 skips both.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL=${ADVOCACY_LOCAL:-$ROOT/.local}
RUN="$LOCAL/run"
UV=${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}
BASE=${ADVOCACY_PORT_BASE:-8100}
CONTENT_PORT=$((BASE + 1)) AMBASSADOR_PORT=$((BASE + 2)) DISTRIBUTION_PORT=$((BASE + 3)) METRICS_PORT=$((BASE + 4))
SERVICES=(content:$CONTENT_PORT ambassador:$AMBASSADOR_PORT distribution:$DISTRIBUTION_PORT metrics:$METRICS_PORT)
ISSUER_PORT=${ISSUER_PORT:-8400}
# The reference dashboard (served by metrics at /dashboard/) may call every API from the browser.
DASHBOARD_ORIGINS="[\"http://127.0.0.1:$METRICS_PORT\", \"http://localhost:$METRICS_PORT\"]"
DEMO_TENANT=${DEMO_TENANT:-1}

KAFKA=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${KAFKA_PORT:-9092}}
MONGO=${MONGODB_URI:-mongodb://127.0.0.1:${FERRETDB_PORT:-27017}/}

docker_answers() { command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {  # start NAME COMMAND... (env comes from the caller)
  local name=$1; shift
  if running "$RUN/$name.pid"; then echo "  $name already running"; return; fi
  setsid nohup "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  echo "  started $name (pid $!, log $RUN/$name.log)"
}

wait_ready() {  # wait_ready URL NAME
  for _ in $(seq 1 60); do
    curl -fsS "$1" >/dev/null 2>&1 && { echo "  $2 ready"; return 0; }
    sleep 1
  done
  echo "  $2 not ready after 60 s; last log lines:" >&2; tail -20 "$RUN/$2.log" >&2; return 1
}

up_local() {
  mkdir -p "$RUN"
  bash "$ROOT/infra/infra.sh" up
  local issuer="http://127.0.0.1:$ISSUER_PORT"
  # A keyring of this machine's own for connector secrets, instead of the settings' dev-only default.
  local secret_key="$LOCAL/distribution-secret-key"
  [ -s "$secret_key" ] || { mkdir -p "$LOCAL"; (umask 077; head -c 32 /dev/urandom | base64 > "$secret_key"); }
  export DISTRIBUTION_SECRET_KEYS="{\"local\": \"$(cat "$secret_key")\"}" DISTRIBUTION_SECRET_KEY_ID=local
  # The demo tenant reports weeks of engagement for posts it shares today: let that history in (0 otherwise,
  # nothing happens to a post before it exists; see services/distribution/README.md, Plausibility).
  if [ "$DEMO_TENANT" = 1 ]; then
    export DISTRIBUTION_ENGAGEMENT_BACKFILL_DAYS=${DISTRIBUTION_ENGAGEMENT_BACKFILL_DAYS:-28}
  fi
  start issuer "$UV" run --frozen advocacy-dev-issuer --key-file "$LOCAL/dev-issuer/key.pem" --issuer "$issuer" \
    serve --port "$ISSUER_PORT"
  wait_ready "$issuer/.well-known/jwks.json" issuer
  for entry in "${SERVICES[@]}"; do
    local svc=${entry%%:*} port=${entry##*:} prefix
    prefix=$(echo "$svc" | tr '[:lower:]' '[:upper:]')
    export "${prefix}_KAFKA_BOOTSTRAP_SERVERS=$KAFKA" "${prefix}_MONGODB_URI=$MONGO" \
      "${prefix}_HTTP_PORT=$port" "${prefix}_AUTH_ISSUER=$issuer" \
      "${prefix}_AUTH_JWKS_URL=$issuer/.well-known/jwks.json" \
      "${prefix}_CORS_ALLOWED_ORIGINS=$DASHBOARD_ORIGINS"
    start "$svc-worker" "$UV" run --frozen "$svc-worker"
    start "$svc-api" "$UV" run --frozen "$svc-api"
  done
  for entry in "${SERVICES[@]}"; do
    wait_ready "http://127.0.0.1:${entry##*:}/readyz" "${entry%%:*}-api"
  done
  if [ "$DEMO_TENANT" = 1 ]; then
    demo_tenant load
    start demo-trickle "$UV" run --frozen python "$ROOT/scripts/demo_tenant.py" "${DEMO_ARGS[@]}" trickle
  fi
  demo_tenant tokens
  echo "Stop: make down (with the same environment)"
}

demo_tenant() {  # demo_tenant load|tokens: the loader talks to the public APIs only
  DEMO_ARGS=(--key-file "$LOCAL/dev-issuer/key.pem" --issuer "http://127.0.0.1:$ISSUER_PORT"
             --content "http://127.0.0.1:$CONTENT_PORT" --ambassador "http://127.0.0.1:$AMBASSADOR_PORT"
             --distribution "http://127.0.0.1:$DISTRIBUTION_PORT" --metrics "http://127.0.0.1:$METRICS_PORT"
             --state "$LOCAL/demo")
  "$UV" run --frozen python "$ROOT/scripts/demo_tenant.py" "${DEMO_ARGS[@]}" "$1"
}

down_local() {
  for pidfile in "$RUN"/*.pid; do
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  bash "$ROOT/infra/infra.sh" down
}

status_local() {
  for pidfile in "$RUN"/*.pid; do
    [ -f "$pidfile" ] || continue
    local name; name=$(basename "$pidfile" .pid)
    if running "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; fi
  done
  bash "$ROOT/infra/infra.sh" status || true
}

case "${1:-}" in
  up) if docker_answers; then docker compose -f "$ROOT/docker-compose.yml" up -d --build; else up_local; fi ;;
  down) if docker_answers; then docker compose -f "$ROOT/docker-compose.yml" down; else down_local; fi ;;
  tokens) demo_tenant tokens ;;
  status) if docker_answers; then docker compose -f "$ROOT/docker-compose.yml" ps; else status_local; fi ;;
  *) echo "usage: $0 up|down|status|tokens" >&2; exit 2 ;;
esac
