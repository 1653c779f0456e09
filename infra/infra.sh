#!/usr/bin/env bash
# infra/infra.sh — local Kafka (KRaft, single node) and FerretDB (SQLite backend, or
# PostgreSQL with FERRETDB_BACKEND=postgresql) for development and tests, without Docker.
#
# Usage: infra/infra.sh <command> [options]
#   install          fetch/build what is missing into the cache (no start)
#   up               install what is missing, start what is not running, wait until
#                    both really work (Kafka: a topic can be created; FerretDB: a
#                    document can be written, read and deleted)
#   down [--purge]   stop all (SIGTERM, then SIGKILL); --purge also deletes their data
#   reset            same as `down --purge`
#   status           show running/stopped, pid, port (and the FerretDB backend);
#                    exit 0 if all that `up` starts run, 3 otherwise
#   logs [-f] [-n N] show the last N (default 100) lines of both logs; -f follows
#   env              print the effective settings (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI, ...)
#   topics ARGS      kafka TopicCommand against the local broker, e.g. `topics --list`
#   produce TOPIC    console producer (lines from stdin) to the local broker
#   consume TOPIC [ARGS]  console consumer from the beginning, e.g. `consume t --max-messages 1`
#   kafka-run CLASS [ARGS]  any Java main class with the Kafka jars on the classpath
#
# Environment (all optional):
#   KAFKA_PORT             Kafka PLAINTEXT listener on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1 (default 9093)
#   KAFKA_HEAP             broker heap flags (default "-Xms512m -Xmx1g")
#   FERRETDB_PORT          FerretDB (MongoDB wire protocol) on 127.0.0.1 (default 27017)
#   ADVOCACY_LOCAL         data, logs, configs and pid files (default <repo>/.local, git-ignored)
#   ADVOCACY_CACHE         downloads and builds shared by all clones
#                          (default $HOME/.cache/advocacy); Maven still uses ~/.m2,
#                          Go its module/build caches
#   FERRETDB_LOG_LEVEL     debug|info|warn|error (default info)
#   FERRETDB_BACKEND       postgresql (default) or sqlite: FerretDB's storage. postgresql
#                          installs Debian's PostgreSQL if missing (apt-get, as root),
#                          runs a private cluster under $ADVOCACY_LOCAL/postgresql on
#                          127.0.0.1:$POSTGRES_PORT and FerretDB on top of it
#   POSTGRES_PORT          that cluster's port on 127.0.0.1 (default 5433; 5432 is left
#                          to a system cluster)
#   POSTGRES_BINDIR        directory of initdb/pg_ctl/postgres (default: the newest
#                          /usr/lib/postgresql/*/bin, else from PATH)
#   INFRA_WAIT_SECS        how long `up` waits for each service to be ready (default 240: a Kafka data directory holding thousands of partitions takes minutes to load)
#   INFRA_STOP_SECS        how long `down` waits after SIGTERM before SIGKILL (default 30)
#
# Layout:
#   $ADVOCACY_CACHE/kafka/<kafka-version>-<pom-hash>/lib/*.jar      (from infra/kafka/pom.xml)
#   $ADVOCACY_CACHE/ferretdb/<ferretdb-version>-<src-hash>/ferretdb-local  (from infra/ferretdb)
#   $ADVOCACY_LOCAL/kafka/{config,data,logs}/ , $ADVOCACY_LOCAL/kafka/kafka.pid
#   $ADVOCACY_LOCAL/ferretdb/{data,logs}/ ,     $ADVOCACY_LOCAL/ferretdb/ferretdb.pid
#   $ADVOCACY_LOCAL/ferretdb/ferretdb.sock     (FerretDB's internal socket, behind the
#                                               write-serialising proxy on $FERRETDB_PORT)
#   $ADVOCACY_LOCAL/postgresql/{data,logs,run}/ (FERRETDB_BACKEND=postgresql only; data is
#                                               owned by the `postgres` user when run as root)
#
# Requirements: bash, java 17+ (always); mvn and go only when the cache lacks the
# Kafka jars or the FerretDB binary. Clients connect to:
#   Kafka    bootstrap servers 127.0.0.1:$KAFKA_PORT
#   FerretDB mongodb://127.0.0.1:$FERRETDB_PORT/

set -Eeuo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HEAP=${KAFKA_HEAP:--Xms512m -Xmx1g}
FERRETDB_PORT=${FERRETDB_PORT:-27017}
FERRETDB_LOG_LEVEL=${FERRETDB_LOG_LEVEL:-info}
ADVOCACY_LOCAL=${ADVOCACY_LOCAL:-$REPO_ROOT/.local}
ADVOCACY_CACHE=${ADVOCACY_CACHE:-$HOME/.cache/advocacy}
INFRA_WAIT_SECS=${INFRA_WAIT_SECS:-240}
INFRA_STOP_SECS=${INFRA_STOP_SECS:-30}
FERRETDB_BACKEND=${FERRETDB_BACKEND:-postgresql}
POSTGRES_PORT=${POSTGRES_PORT:-5433}
HOST=127.0.0.1
case $FERRETDB_BACKEND in
  sqlite | postgresql) ;;
  *) printf '[infra] ERROR: FERRETDB_BACKEND must be sqlite or postgresql, not %s\n' "$FERRETDB_BACKEND" >&2; exit 2 ;;
esac

# absolute paths, so that pid/cmdline matching and the daemons do not depend on $PWD
mkdir -p -- "$ADVOCACY_LOCAL" "$ADVOCACY_CACHE"
ADVOCACY_LOCAL=$(cd -- "$ADVOCACY_LOCAL" && pwd -P)
ADVOCACY_CACHE=$(cd -- "$ADVOCACY_CACHE" && pwd -P)

KAFKA_SRC=$SCRIPT_DIR/kafka
KAFKA_DIR=$ADVOCACY_LOCAL/kafka
KAFKA_CONF_DIR=$KAFKA_DIR/config
KAFKA_DATA_DIR=$KAFKA_DIR/data
KAFKA_LOG_DIR=$KAFKA_DIR/logs
KAFKA_PROPS=$KAFKA_CONF_DIR/server.properties
KAFKA_PID=$KAFKA_DIR/kafka.pid
KAFKA_READY_TOPIC=__advocacy_infra_ready
# what identifies our broker among all processes (cmdline substring)
KAFKA_MARKER="kafka.Kafka $KAFKA_PROPS"

FDB_SRC=$SCRIPT_DIR/ferretdb
FDB_DIR=$ADVOCACY_LOCAL/ferretdb
FDB_DATA_DIR=$FDB_DIR/data
FDB_LOG_DIR=$FDB_DIR/logs
FDB_LOG=$FDB_LOG_DIR/ferretdb.log
FDB_PID=$FDB_DIR/ferretdb.pid
# what identifies our FerretDB, per backend (the sqlite command line is unchanged since
# before the postgresql option, so instances started by older versions are still found)
FDB_MARKER_SQLITE="-sqlite-dir $FDB_DATA_DIR "
FDB_MARKER_POSTGRESQL="-state-dir $FDB_DIR "
if [[ $FERRETDB_BACKEND == postgresql ]]; then FDB_MARKER=$FDB_MARKER_POSTGRESQL; else FDB_MARKER=$FDB_MARKER_SQLITE; fi

PG_DIR=$ADVOCACY_LOCAL/postgresql
PG_DATA_DIR=$PG_DIR/data
PG_LOG=$PG_DIR/logs/postgresql.log
PG_RUN_DIR=$PG_DIR/run
PG_USER=postgres
PG_DATABASE=ferretdb
# FerretDB 1.24 holds one pooled connection per statement of an `update` command until the
# command ends, and hangs when the pool runs dry: its default pool of 50 makes a 50-statement
# update hang. 100 puts the limit where the SQLite backend has it (its 100 SQLite connections),
# so "chunk updates to 50 statements" holds on both; max_connections leaves room above that.
PG_POOL_MAX_CONNS=100
PG_MAX_CONNECTIONS=130
POSTGRESQL_URL="postgres://$PG_USER@$HOST:$POSTGRES_PORT/$PG_DATABASE?pool_max_conns=$PG_POOL_MAX_CONNS"

# ---------------------------------------------------------------- helpers

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required ($2) but not on PATH"; }

sha() { cat -- "$@" | sha256sum | cut -c1-16; }

kafka_version() { sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$KAFKA_SRC/pom.xml" | head -n1; }
ferretdb_version() { awk '$1 == "github.com/FerretDB/FerretDB" { print $2; exit } $2 == "github.com/FerretDB/FerretDB" { print $3; exit }' "$FDB_SRC/go.mod"; }

kafka_cache_dir() { printf '%s/kafka/%s-%s' "$ADVOCACY_CACHE" "$(kafka_version)" "$(sha "$KAFKA_SRC/pom.xml")"; }
kafka_lib() { printf '%s/lib' "$(kafka_cache_dir)"; }
# the Go sources of the binary (not the tests), in a stable order
fdb_sources() {
  local f
  for f in "$FDB_SRC"/*.go; do [[ $f == *_test.go ]] || printf '%s\n' "$f"; done | LC_ALL=C sort
}
fdb_cache_dir() {
  local srcs; mapfile -t srcs < <(fdb_sources)
  printf '%s/ferretdb/%s-%s' "$ADVOCACY_CACHE" "$(ferretdb_version)" \
    "$( { cat "$FDB_SRC/go.mod" "$FDB_SRC/go.sum" "${srcs[@]}"; uname -sm; } | sha256sum | cut -c1-16)"
}
fdb_bin() { printf '%s/ferretdb-local' "$(fdb_cache_dir)"; }

# Run "$@" holding an exclusive lock on file $1 (fd 8). Daemons are never started
# under it, and fd 8 is closed for them anyway.
with_lock() {
  local lockfile=$1; shift
  if command -v flock >/dev/null 2>&1; then
    (
      exec 8>"$lockfile"
      flock -w 900 8 || die "could not lock $lockfile within 900 s"
      "$@"
    )
  else
    "$@"
  fi
}

# cmdline of a pid with NULs as spaces; empty if gone
cmdline_of() { [[ -r /proc/$1/cmdline ]] && tr '\0\n' '  ' </proc/"$1"/cmdline 2>/dev/null || true; }

# pid_alive PID MARKER: PID exists, is not a zombie and its cmdline contains MARKER
pid_alive() {
  local pid=$1 marker=$2 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -d /proc/$pid ]] || return 1
  state=$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null || true)
  [[ $state != Z && -n $state ]] || return 1
  [[ $(cmdline_of "$pid") == *"$marker"* ]]
}

# find_by_marker MARKER: pids whose cmdline contains MARKER (used when a pid file was lost)
find_by_marker() {
  local marker=$1 p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    [[ $(cmdline_of "$p") == *"$marker"* ]] && [[ $(cmdline_of "$p") != *infra.sh* ]] && printf '%s\n' "$p"
  done
  return 0
}

# service_pid PIDFILE MARKER: print the pid of the running service (adopting a lost one), or fail
service_pid() {
  local pidfile=$1 marker=$2 pid=""
  [[ -f $pidfile ]] && pid=$(<"$pidfile")
  if pid_alive "$pid" "$marker"; then printf '%s\n' "$pid"; return 0; fi
  pid=$(find_by_marker "$marker" | head -n1)
  if [[ -n $pid ]] && pid_alive "$pid" "$marker"; then
    printf '%s\n' "$pid" >"$pidfile"
    printf '%s\n' "$pid"
    return 0
  fi
  rm -f -- "$pidfile"
  return 1
}

# port_pids PORT: pids listening on 127.0.0.1/any:PORT (may be empty if not visible)
port_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true; }

port_listening() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]
  else
    (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null
  fi
}

# describe who holds a port
port_owner() {
  local port=$1 p out=""
  for p in $(port_pids "$port"); do
    out+="pid $p ($(cmdline_of "$p" | cut -c1-160)) "
  done
  [[ -n $out ]] && printf '%s' "$out" || printf 'an unknown process'
}

# ensure_port_free PORT WHAT OURPID
ensure_port_free() {
  local port=$1 what=$2
  if port_listening "$port"; then
    die "port $port (needed for $what) is already taken by $(port_owner "$port"). Stop it, or choose another port via the env vars (see the top of infra/infra.sh)."
  fi
}

# start_daemon PIDFILE OUTFILE CMD...: start CMD detached (own session), its pid in PIDFILE
start_daemon() {
  local pidfile=$1 out=$2; shift 2
  rm -f -- "$pidfile"
  # keep appending to the log, but rotate once it is large
  if [[ -f $out ]] && (($(stat -c %s -- "$out") > 50 * 1024 * 1024)); then mv -f -- "$out" "$out.1"; fi
  # the inner shell writes its own pid, then execs the command: that pid is the daemon's
  # shellcheck disable=SC2016 # $$ and $0/$@ are for the inner shell
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$out" 2>&1 8>&- 9>&- &
  local i
  for i in $(seq 1 50); do [[ -s $pidfile ]] && return 0; sleep 0.1; done
  die "could not start: $*"
}

# stop_service NAME PIDFILE MARKER
stop_service() {
  local name=$1 pidfile=$2 marker=$3 pid pids i
  pids=$( { service_pid "$pidfile" "$marker" || true; find_by_marker "$marker"; } | sort -u)
  if [[ -z $pids ]]; then
    rm -f -- "$pidfile"
    log "$name: not running"
    return 0
  fi
  for pid in $pids; do
    log "$name: stopping pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for ((i = 0; i < INFRA_STOP_SECS * 5; i++)); do
    local left=""
    for pid in $pids; do pid_alive "$pid" "$marker" && left+="$pid "; done
    [[ -z $left ]] && break
    sleep 0.2
  done
  for pid in $pids; do
    if pid_alive "$pid" "$marker"; then
      log "$name: pid $pid still alive after ${INFRA_STOP_SECS}s, sending SIGKILL"
      kill -KILL -- -"$pid" 2>/dev/null || true   # its whole session/process group
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 50; i++)); do
    local left=""
    for pid in $pids; do pid_alive "$pid" "$marker" && left+="$pid "; done
    [[ -z $left ]] && break
    sleep 0.1
  done
  rm -f -- "$pidfile"
  log "$name: stopped"
}

fail_with_log() {
  local msg=$1 file=$2
  printf '[infra] ERROR: %s\n' "$msg" >&2
  if [[ -f $file ]]; then
    printf '[infra] ---- last 40 lines of %s ----\n' "$file" >&2
    tail -n 40 -- "$file" >&2 || true
    printf '[infra] ----\n' >&2
  fi
  exit 1
}

java_major() {
  java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | cut -d. -f1
}

# ---------------------------------------------------------------- install

install_kafka_locked() {
  local dir lib tmp
  dir=$(kafka_cache_dir); lib=$dir/lib
  [[ -f $dir/.complete ]] && return 0
  need mvn "to download the Kafka jars once into $dir"
  need java "to run Kafka"
  log "kafka $(kafka_version): resolving jars with Maven into $lib (one time)"
  rm -rf -- "$dir"; mkdir -p -- "$dir"
  tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
  cp -- "$KAFKA_SRC/pom.xml" "$tmp/pom.xml"
  if ! (cd "$tmp" && mvn -B -q -f pom.xml \
          org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
          -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1); then
    cat "$tmp/mvn.log" >&2
    rm -rf -- "$dir"
    die "Maven could not resolve the Kafka jars (see above)"
  fi
  [[ -f $tmp/lib/kafka_2.13-$(kafka_version).jar ]] || { rm -rf -- "$dir"; die "kafka_2.13-$(kafka_version).jar missing after Maven run"; }
  mv -- "$tmp/lib" "$lib"
  cp -- "$KAFKA_SRC/pom.xml" "$dir/pom.xml"
  rm -rf -- "$tmp"
  touch -- "$dir/.complete"
  log "kafka: $(find "$lib" -name '*.jar' | wc -l) jars cached"
}

install_ferretdb_locked() {
  local dir bin tmp goflags
  dir=$(fdb_cache_dir); bin=$dir/ferretdb-local
  [[ -x $bin && -f $dir/.complete ]] && return 0
  need go "to build the FerretDB binary once into $dir"
  log "ferretdb $(ferretdb_version): building $bin (one time)"
  rm -rf -- "$dir"; mkdir -p -- "$dir"
  # build from a copy, so Go can never touch the work tree
  tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
  local srcs; mapfile -t srcs < <(fdb_sources)
  cp -- "$FDB_SRC/go.mod" "$FDB_SRC/go.sum" "${srcs[@]}" "$tmp/"
  goflags="${GOFLAGS:-}"
  [[ $goflags == *-mod=* ]] || goflags+=" -mod=mod"
  [[ $goflags == *-buildvcs=* ]] || goflags+=" -buildvcs=false"
  # modernc.org/sqlite is pure Go: no cgo needed; GOTOOLCHAIN=local: never download a toolchain
  if ! (cd "$tmp" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="$goflags" \
          go build -trimpath -ldflags='-s -w' -o "$tmp/ferretdb-local" . >"$tmp/build.log" 2>&1); then
    cat "$tmp/build.log" >&2
    rm -rf -- "$dir"
    die "go build of infra/ferretdb failed (see above)"
  fi
  mv -- "$tmp/ferretdb-local" "$bin"
  cp -- "$FDB_SRC/go.mod" "${srcs[@]}" "$dir/"
  rm -rf -- "$tmp"
  touch -- "$dir/.complete"
  log "ferretdb: built $bin"
}

install_kafka() {
  [[ -f $(kafka_cache_dir)/.complete ]] && return 0
  mkdir -p -- "$ADVOCACY_CACHE/kafka"
  with_lock "$ADVOCACY_CACHE/kafka/.lock" install_kafka_locked
}

install_ferretdb() {
  [[ -x $(fdb_bin) && -f $(fdb_cache_dir)/.complete ]] && return 0
  mkdir -p -- "$ADVOCACY_CACHE/ferretdb"
  with_lock "$ADVOCACY_CACHE/ferretdb/.lock" install_ferretdb_locked
}

check_java() {
  need java "to run Kafka"
  local m; m=$(java_major)
  [[ $m =~ ^[0-9]+$ ]] && ((m >= 17)) && return 0
  die "Kafka $(kafka_version) needs Java 17 or newer, found: $(java -version 2>&1 | head -n1)"
}

# ---------------------------------------------------------------- kafka

kafka_cp() { printf '%s/*' "$(kafka_lib)"; }

# java command line for Kafka CLI tools (quick start, small heap, warnings only)
kafka_tool() {
  java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/tools-log4j2.xml" \
    -cp "$(kafka_cp)" "$@"
}

write_kafka_config() {
  mkdir -p -- "$KAFKA_CONF_DIR" "$KAFKA_DATA_DIR" "$KAFKA_LOG_DIR"
  cp -- "$KAFKA_SRC/log4j2.xml" "$KAFKA_CONF_DIR/log4j2.xml"
  cp -- "$KAFKA_SRC/tools-log4j2.xml" "$KAFKA_CONF_DIR/tools-log4j2.xml"
  cat >"$KAFKA_PROPS.tmp" <<EOF
# Generated by infra/infra.sh on every start — edit the script, not this file.
process.roles=broker,controller
node.id=1
# static single-voter quorum: robust to port changes between runs
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA_DIR
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=3
num.io.threads=4
log.retention.hours=168
log.segment.bytes=104857600
log.retention.check.interval.ms=300000
EOF
  mv -- "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
  cat >"$KAFKA_CONF_DIR/tools.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

kafka_formatted() { [[ -f $KAFKA_DATA_DIR/meta.properties ]]; }

format_kafka() {
  kafka_formatted && return 0
  local cid
  cid=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG_DIR/format.log" | tail -n1)
  [[ -n $cid ]] || fail_with_log "could not generate a Kafka cluster id" "$KAFKA_LOG_DIR/format.log"
  log "kafka: formatting storage in $KAFKA_DATA_DIR (cluster id $cid)"
  kafka_tool kafka.tools.StorageTool format --ignore-formatted -t "$cid" -c "$KAFKA_PROPS" \
    >>"$KAFKA_LOG_DIR/format.log" 2>&1 || fail_with_log "kafka storage format failed" "$KAFKA_LOG_DIR/format.log"
}

kafka_topics() {
  timeout 30 java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/tools-log4j2.xml" -cp "$(kafka_cp)" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
    --command-config "$KAFKA_CONF_DIR/tools.properties" "$@"
}

# ready = an admin client can create a topic and it has a leader
kafka_ready() {
  local out=$KAFKA_LOG_DIR/ready-check.log
  printf '%s ready check\n' "$(date '+%F %T')" >>"$out"
  kafka_topics --create --if-not-exists --topic "$KAFKA_READY_TOPIC" \
    --partitions 1 --replication-factor 1 >>"$out" 2>&1 || return 1
  local desc
  desc=$(kafka_topics --describe --topic "$KAFKA_READY_TOPIC" 2>>"$out") || return 1
  printf '%s\n' "$desc" >>"$out"
  [[ $desc == *"Leader: 1"* ]]
}

up_kafka() {
  local pid started=0
  check_java
  install_kafka
  mkdir -p -- "$KAFKA_DIR"
  if pid=$(service_pid "$KAFKA_PID" "$KAFKA_MARKER"); then
    log "kafka: already running (pid $pid)"
    grep -qxF "listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT" "$KAFKA_PROPS" 2>/dev/null ||
      die "kafka (pid $pid) runs with other ports ($(grep '^listeners=' "$KAFKA_PROPS" 2>/dev/null)); run 'infra/infra.sh down' first"
  else
    ensure_port_free "$KAFKA_PORT" "Kafka (KAFKA_PORT)"
    ensure_port_free "$KAFKA_CONTROLLER_PORT" "the Kafka controller (KAFKA_CONTROLLER_PORT)"
    write_kafka_config
    format_kafka
    log "kafka: starting $(kafka_version) on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    # shellcheck disable=SC2086 # KAFKA_HEAP is a list of JVM flags
    start_daemon "$KAFKA_PID" "$KAFKA_LOG_DIR/kafka.out" \
      java $KAFKA_HEAP -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_CONF_DIR/log4j2.xml" \
        -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
        -cp "$(kafka_cp)" kafka.Kafka "$KAFKA_PROPS"
    pid=$(<"$KAFKA_PID")
    started=1
  fi

  mkdir -p -- "$KAFKA_LOG_DIR"; : >"$KAFKA_LOG_DIR/ready-check.log"
  local deadline=$((SECONDS + INFRA_WAIT_SECS))
  while :; do
    if ! pid_alive "$pid" "$KAFKA_MARKER"; then
      rm -f -- "$KAFKA_PID"
      tail -n 20 -- "$KAFKA_LOG_DIR/kafka.out" >&2 2>/dev/null || true
      fail_with_log "kafka (pid $pid) exited during startup" "$KAFKA_LOG_DIR/server.log"
    fi
    if port_listening "$KAFKA_PORT" && kafka_ready; then break; fi
    if ((SECONDS >= deadline)); then
      tail -n 10 -- "$KAFKA_LOG_DIR/ready-check.log" >&2 2>/dev/null || true
      fail_with_log "kafka (pid $pid) not ready on $HOST:$KAFKA_PORT after ${INFRA_WAIT_SECS}s" "$KAFKA_LOG_DIR/server.log"
    fi
    sleep 1
  done
  log "kafka: ready on $HOST:$KAFKA_PORT (pid $pid$( ((started)) && echo ', started now'))"
}

# ---------------------------------------------------------------- ferretdb

fdb_check() { "$(fdb_bin)" -check -listen "$HOST:$FERRETDB_PORT" -check-timeout 3s >>"$FDB_LOG_DIR/ready-check.log" 2>&1; }

up_ferretdb() {
  local pid started=0 bin
  install_ferretdb
  bin=$(fdb_bin)
  mkdir -p -- "$FDB_DATA_DIR" "$FDB_LOG_DIR"
  local other=$FDB_MARKER_POSTGRESQL other_backend=postgresql
  [[ $FERRETDB_BACKEND == postgresql ]] && other=$FDB_MARKER_SQLITE other_backend=sqlite
  if pid=$(service_pid "$FDB_PID" "$other"); then
    die "ferretdb (pid $pid) runs with the $other_backend backend; run 'infra/infra.sh down' first"
  fi
  if pid=$(service_pid "$FDB_PID" "$FDB_MARKER"); then
    log "ferretdb: already running (pid $pid, $FERRETDB_BACKEND backend)"
    [[ $(cmdline_of "$pid") == *"-listen $HOST:$FERRETDB_PORT "* ]] ||
      die "ferretdb (pid $pid) runs with another address ($(cmdline_of "$pid")); run 'infra/infra.sh down' first"
  else
    ensure_port_free "$FERRETDB_PORT" "FerretDB (FERRETDB_PORT)"
    log "ferretdb: starting $(ferretdb_version) on $HOST:$FERRETDB_PORT ($FERRETDB_BACKEND backend)"
    if [[ $FERRETDB_BACKEND == postgresql ]]; then
      start_daemon "$FDB_PID" "$FDB_LOG" \
        "$bin" -listen "$HOST:$FERRETDB_PORT" -handler postgresql -postgresql-url "$POSTGRESQL_URL" \
          -state-dir "$FDB_DIR" -log-level "$FERRETDB_LOG_LEVEL"
    else
      start_daemon "$FDB_PID" "$FDB_LOG" \
        "$bin" -listen "$HOST:$FERRETDB_PORT" -sqlite-dir "$FDB_DATA_DIR" -log-level "$FERRETDB_LOG_LEVEL"
    fi
    pid=$(<"$FDB_PID")
    started=1
  fi

  : >"$FDB_LOG_DIR/ready-check.log"
  local deadline=$((SECONDS + INFRA_WAIT_SECS))
  while :; do
    if ! pid_alive "$pid" "$FDB_MARKER"; then
      rm -f -- "$FDB_PID"
      fail_with_log "ferretdb (pid $pid) exited during startup" "$FDB_LOG"
    fi
    if port_listening "$FERRETDB_PORT" && fdb_check; then break; fi
    if ((SECONDS >= deadline)); then
      tail -n 5 -- "$FDB_LOG_DIR/ready-check.log" >&2 2>/dev/null || true
      fail_with_log "ferretdb (pid $pid) not ready on $HOST:$FERRETDB_PORT after ${INFRA_WAIT_SECS}s" "$FDB_LOG"
    fi
    sleep 0.5
  done
  log "ferretdb: ready on mongodb://$HOST:$FERRETDB_PORT/ (pid $pid$( ((started)) && echo ', started now'))"
}

# ---------------------------------------------------------------- postgresql
# Only with FERRETDB_BACKEND=postgresql: a private cluster (its own data directory, port and
# socket directory), never the system's one. As root, the server runs as the `postgres`
# user (initdb and postgres refuse to run as root).

pg_bindir() {
  local d
  if [[ -n ${POSTGRES_BINDIR:-} ]]; then printf '%s\n' "$POSTGRES_BINDIR"; return 0; fi
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
  if [[ -n $d && -x $d/initdb ]]; then printf '%s\n' "$d"; return 0; fi
  d=$(command -v initdb 2>/dev/null) || return 1
  dirname -- "$d"
}
pg_installed() { local d; d=$(pg_bindir) && [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; }

# as_pg_owner CMD...: run as the cluster owner (`postgres` when we are root)
as_pg_owner() {
  if ((EUID == 0)); then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

install_postgresql_locked() {
  pg_installed && return 0
  ((EUID == 0)) || die "PostgreSQL is not installed; install it (Debian: apt-get install postgresql) or set POSTGRES_BINDIR"
  need apt-get "to install PostgreSQL"
  log "postgresql: installing Debian's package (apt-get update; apt-get install -y postgresql)"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 || die "apt-get install postgresql failed"
  pg_installed || die "postgresql installed, but initdb/pg_ctl/postgres not found (set POSTGRES_BINDIR)"
}
install_postgresql() {
  pg_installed && return 0
  mkdir -p -- "$ADVOCACY_CACHE"
  with_lock "$ADVOCACY_CACHE/.postgresql-install.lock" install_postgresql_locked
}

# line N of postmaster.pid (1 pid, 2 data dir, 4 port, 5 socket dir)
pg_pid_line() { sed -n "${1}p" "$PG_DATA_DIR/postmaster.pid" 2>/dev/null; }
# the pid of our running postmaster, or fail
pg_pid() {
  local pid
  pid=$(pg_pid_line 1)
  pid_alive "$pid" "-D $PG_DATA_DIR" && printf '%s\n' "$pid"
}

pg_sql() {
  "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$POSTGRES_PORT" -U "$PG_USER" "$@"
}

init_postgresql() {
  [[ -f $PG_DATA_DIR/PG_VERSION ]] && return 0
  log "postgresql: initdb in $PG_DATA_DIR (superuser $PG_USER, trust on loopback only)"
  mkdir -p -- "$PG_DATA_DIR"
  ((EUID == 0)) && chown "$PG_USER:" "$PG_DATA_DIR"
  chmod 700 "$PG_DATA_DIR"
  as_pg_owner "$(pg_bindir)/initdb" -D "$PG_DATA_DIR" -U "$PG_USER" -E UTF8 --no-locale \
      --auth-local=trust --auth-host=trust >>"$PG_DIR/logs/initdb.log" 2>&1 ||
    fail_with_log "initdb failed" "$PG_DIR/logs/initdb.log"
}

up_postgresql() {
  local pid started=0
  install_postgresql
  mkdir -p -- "$PG_DIR/logs" "$PG_RUN_DIR"
  # the owner must reach its files through $ADVOCACY_LOCAL
  ((EUID == 0)) && chown "$PG_USER:" "$PG_DIR/logs" "$PG_RUN_DIR"
  init_postgresql
  if pid=$(pg_pid); then
    log "postgresql: already running (pid $pid)"
    [[ $(pg_pid_line 4) == "$POSTGRES_PORT" ]] ||
      die "postgresql (pid $pid) runs on port $(pg_pid_line 4), not $POSTGRES_PORT; run 'infra/infra.sh down' first"
  else
    ensure_port_free "$POSTGRES_PORT" "PostgreSQL (POSTGRES_PORT)"
    log "postgresql: starting $(<"$PG_DATA_DIR/PG_VERSION") on $HOST:$POSTGRES_PORT"
    # Local development data: synchronous_commit=off trades the last few hundred ms of
    # commits on a crash for not waiting on fsync per write (FerretDB's SQLite backend does
    # not wait on one either); fsync stays on, so the cluster itself is never corrupted.
    local owner=()
    ((EUID == 0)) && owner=(runuser -u "$PG_USER" --)
    setsid "${owner[@]}" "$(pg_bindir)/pg_ctl" -D "$PG_DATA_DIR" -l "$PG_LOG" -w -t "$INFRA_WAIT_SECS" \
      -o "-c port=$POSTGRES_PORT -c listen_addresses=$HOST -c unix_socket_directories=$PG_RUN_DIR -c synchronous_commit=off -c max_connections=$PG_MAX_CONNECTIONS" \
      start </dev/null >>"$PG_DIR/logs/pg_ctl.log" 2>&1 8>&- 9>&- ||
      fail_with_log "postgresql did not start" "$PG_LOG"
    pid=$(pg_pid) || fail_with_log "postgresql exited during startup" "$PG_LOG"
    started=1
  fi
  local deadline=$((SECONDS + INFRA_WAIT_SECS))
  until "$(pg_bindir)/pg_isready" -q -h "$HOST" -p "$POSTGRES_PORT"; do
    ((SECONDS < deadline)) || fail_with_log "postgresql (pid $pid) not ready on $HOST:$POSTGRES_PORT" "$PG_LOG"
    sleep 0.5
  done
  if [[ $(pg_sql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'") != 1 ]]; then
    log "postgresql: creating database $PG_DATABASE"
    pg_sql -d postgres -c "CREATE DATABASE $PG_DATABASE" || die "could not create database $PG_DATABASE"
  fi
  log "postgresql: ready on $HOST:$POSTGRES_PORT (pid $pid$( ((started)) && echo ', started now'))"
}

stop_postgresql() {
  local pid
  if ! pid=$(pg_pid); then
    [[ -d $PG_DATA_DIR ]] && log "postgresql: not running"
    return 0
  fi
  log "postgresql: stopping pid $pid (fast shutdown)"
  as_pg_owner "$(pg_bindir)/pg_ctl" -D "$PG_DATA_DIR" -m fast -w -t "$INFRA_STOP_SECS" stop >>"$PG_DIR/logs/pg_ctl.log" 2>&1 || {
    log "postgresql: pid $pid still alive after ${INFRA_STOP_SECS}s, immediate shutdown"
    as_pg_owner "$(pg_bindir)/pg_ctl" -D "$PG_DATA_DIR" -m immediate -w stop >>"$PG_DIR/logs/pg_ctl.log" 2>&1 || true
  }
  log "postgresql: stopped"
}

# ---------------------------------------------------------------- commands

ensure_gitignore() {
  # only when .local is the default one inside this repo
  [[ $ADVOCACY_LOCAL == "$REPO_ROOT/.local" ]] || return 0
  local gi=$REPO_ROOT/.gitignore
  if [[ ! -f $gi ]] || ! grep -qxE '/?\.local/?' "$gi"; then
    [[ -s $gi && $(tail -c1 "$gi") != "" ]] && printf '\n' >>"$gi"
    printf '.local/\n' >>"$gi"
  fi
}

cmd_install() {
  check_java
  install_kafka
  install_ferretdb
  [[ $FERRETDB_BACKEND == postgresql ]] && install_postgresql
  log "installed: kafka $(kafka_version) in $(kafka_lib)"
  log "installed: ferretdb $(ferretdb_version) at $(fdb_bin)"
}

cmd_up() {
  ensure_gitignore
  with_lock "$ADVOCACY_LOCAL/.infra.lock" up_locked
}
up_locked() {
  up_kafka
  [[ $FERRETDB_BACKEND == postgresql ]] && up_postgresql
  up_ferretdb
  log "up: Kafka 127.0.0.1:$KAFKA_PORT, FerretDB mongodb://127.0.0.1:$FERRETDB_PORT/ ($FERRETDB_BACKEND backend)"
}

purge_data() {
  log "purging $KAFKA_DIR, $FDB_DIR and $PG_DIR"
  rm -rf -- "$KAFKA_DIR" "$FDB_DIR" "$PG_DIR"
}

cmd_down() {
  local purge=0 a
  for a in "$@"; do
    case $a in
      --purge | -p) purge=1 ;;
      *) die "down: unknown option $a (use --purge)" ;;
    esac
  done
  with_lock "$ADVOCACY_LOCAL/.infra.lock" down_locked "$purge"
}
down_locked() {
  # whichever backend it was started with
  if service_pid "$FDB_PID" "$FDB_MARKER_POSTGRESQL" >/dev/null; then
    stop_service ferretdb "$FDB_PID" "$FDB_MARKER_POSTGRESQL"
  else
    stop_service ferretdb "$FDB_PID" "$FDB_MARKER_SQLITE"
  fi
  stop_postgresql
  stop_service kafka "$KAFKA_PID" "$KAFKA_MARKER"
  if (($1)); then purge_data; fi
}

cmd_status() {
  local rc=0 pid
  if pid=$(service_pid "$KAFKA_PID" "$KAFKA_MARKER") && port_listening "$KAFKA_PORT"; then
    printf 'kafka     running  pid %-8s port %s (controller %s)  version %s\n' "$pid" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$(kafka_version)"
  elif [[ -n ${pid:-} ]]; then
    printf 'kafka     starting pid %-8s port %s not listening yet\n' "$pid" "$KAFKA_PORT"; rc=3
  else
    printf 'kafka     stopped               port %s\n' "$KAFKA_PORT"; rc=3
  fi
  pid=""
  local backend=$FERRETDB_BACKEND marker=$FDB_MARKER
  # report the backend it runs with, whatever FERRETDB_BACKEND says now
  if service_pid "$FDB_PID" "$FDB_MARKER_POSTGRESQL" >/dev/null; then
    backend=postgresql marker=$FDB_MARKER_POSTGRESQL
  elif service_pid "$FDB_PID" "$FDB_MARKER_SQLITE" >/dev/null; then
    backend=sqlite marker=$FDB_MARKER_SQLITE
  fi
  if pid=$(service_pid "$FDB_PID" "$marker") && port_listening "$FERRETDB_PORT"; then
    printf 'ferretdb  running  pid %-8s port %s  version %s  backend %s\n' "$pid" "$FERRETDB_PORT" "$(ferretdb_version)" "$backend"
  elif [[ -n ${pid:-} ]]; then
    printf 'ferretdb  starting pid %-8s port %s not listening yet\n' "$pid" "$FERRETDB_PORT"; rc=3
  else
    printf 'ferretdb  stopped               port %s\n' "$FERRETDB_PORT"; rc=3
  fi
  if pid=$(pg_pid); then
    printf 'postgres  running  pid %-8s port %s  version %s  data %s\n' "$pid" "$(pg_pid_line 4)" "$(<"$PG_DATA_DIR/PG_VERSION")" "$PG_DATA_DIR"
  elif [[ $backend == postgresql ]]; then
    printf 'postgres  stopped               port %s\n' "$POSTGRES_PORT"; rc=3
  fi
  return $rc
}

cmd_logs() {
  local follow=0 n=100
  while (($#)); do
    case $1 in
      -f | --follow) follow=1 ;;
      -n) shift; n=${1:?-n needs a number} ;;
      *) die "logs: unknown option $1 (use -f, -n N)" ;;
    esac
    shift
  done
  local files=() f
  for f in "$KAFKA_LOG_DIR/server.log" "$FDB_LOG" "$PG_LOG"; do
    [[ $f == "$PG_LOG" && $FERRETDB_BACKEND != postgresql && ! -f $f ]] && continue
    if [[ -f $f ]]; then files+=("$f"); else log "no log yet: $f"; fi
  done
  ((${#files[@]})) || return 0
  if ((follow)); then exec tail -n "$n" -F -- "${files[@]}"; else tail -n "$n" -- "${files[@]}"; fi
}

cmd_env() {
  cat <<EOF
KAFKA_VERSION=$(kafka_version)
FERRETDB_VERSION=$(ferretdb_version)
KAFKA_PORT=$KAFKA_PORT
KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
KAFKA_HEAP=$KAFKA_HEAP
FERRETDB_PORT=$FERRETDB_PORT
FERRETDB_BACKEND=$FERRETDB_BACKEND
POSTGRES_PORT=$POSTGRES_PORT
POSTGRESQL_URL=$POSTGRESQL_URL
ADVOCACY_LOCAL=$ADVOCACY_LOCAL
ADVOCACY_CACHE=$ADVOCACY_CACHE
KAFKA_LIB=$(kafka_lib)
FERRETDB_BIN=$(fdb_bin)
KAFKA_BOOTSTRAP_SERVERS=$HOST:$KAFKA_PORT
MONGODB_URI=mongodb://$HOST:$FERRETDB_PORT/
EOF
}

# Kafka CLI helpers (need the jars; the broker for topics/produce/consume)
tools_prepare() {
  check_java
  install_kafka
  if [[ ! -f $KAFKA_CONF_DIR/tools-log4j2.xml ]]; then
    mkdir -p -- "$KAFKA_CONF_DIR"
    cp -- "$KAFKA_SRC/tools-log4j2.xml" "$KAFKA_CONF_DIR/tools-log4j2.xml"
  fi
}
cmd_kafka_run() {
  (($#)) || die "kafka-run: give a main class"
  tools_prepare
  kafka_tool "$@"
}
cmd_topics() {
  tools_prepare
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" "$@"
}
cmd_produce() {
  local topic=${1:?produce: give a topic}; shift
  tools_prepare
  kafka_tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$HOST:$KAFKA_PORT" --topic "$topic" "$@"
}
cmd_consume() {
  local topic=${1:?consume: give a topic}; shift
  tools_prepare
  kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$HOST:$KAFKA_PORT" \
    --topic "$topic" --from-beginning "$@"
}

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    install) cmd_install "$@" ;;
    up | start) cmd_up "$@" ;;
    down | stop) cmd_down "$@" ;;
    reset) cmd_down --purge ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    env) cmd_env ;;
    topics) cmd_topics "$@" ;;
    produce) cmd_produce "$@" ;;
    consume) cmd_consume "$@" ;;
    kafka-run) cmd_kafka_run "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
