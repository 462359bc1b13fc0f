#!/usr/bin/env bash
# The main job end to end on local defaults: the local services, a small
# `shop` database in Postgres and in MariaDB, tidewater running both example
# pipelines in one daemon (capture -> Kafka -> Hudi tables in
# /var/lib/tidewater/lake), a live workload on both (inserts, updates,
# deletes, a partition move), a wait until each lake table equals its
# source, a few queries read back from the Hudi tables by hudi-rs (a reader
# tidewater did not write), and `tidewater status`.
#
#   scripts/quickstart.sh
#   TIDEWATER_BIN=target/debug/tidewater scripts/quickstart.sh   # no release build
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n[quickstart] %s\n' "$*"; }
fail() {
  printf '[quickstart] %s\n' "$*" >&2
  exit 1
}

step "starting the local services (the first run installs them)"
scripts/services.sh up
eval "$(scripts/services.sh env)"

if [[ -n ${TIDEWATER_BIN:-} ]]; then
  tidewater=$TIDEWATER_BIN
else
  step "building tidewater"
  cargo build --release --locked
  tidewater=target/release/tidewater
fi

step "checking the example pipelines"
"$tidewater" check pipelines/

PSQL=${TIDEWATER_PSQL:-psql}
export PGPASSWORD=$TIDEWATER_PG_PASSWORD
pg() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$TIDEWATER_PG_HOST" -p "$TIDEWATER_PG_PORT" -U tidewater "$@"; }

step "creating the shop database in Postgres (kept between runs)"
if [[ -z $(pg -d tidewater -Atc "SELECT 1 FROM pg_database WHERE datname = 'shop'") ]]; then
  pg -d tidewater -c "CREATE DATABASE shop"
fi
pg -d shop <<'SQL'
CREATE TABLE IF NOT EXISTS customers (
  id bigint PRIMARY KEY, name text NOT NULL, email text, vip boolean DEFAULT false);
CREATE TABLE IF NOT EXISTS orders (
  id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id), status text NOT NULL,
  amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL, card_number text);
INSERT INTO customers
  SELECT g, 'customer ' || g, 'c' || g || '@example.com', g % 10 = 0 FROM generate_series(1, 200) g
  ON CONFLICT DO NOTHING;
INSERT INTO orders
  SELECT g, 1 + g % 200, 'new', (g % 500) + 0.99, timestamptz '2026-11-01 08:00+00' + (g % 5) * interval '1 day',
         '4111 1111 1111 ' || lpad((g % 10000)::text, 4, '0')
  FROM generate_series(1, 1000) g
  ON CONFLICT DO NOTHING;
SQL

my() { mariadb --no-defaults --protocol=TCP -h "$TIDEWATER_MYSQL_HOST" -P "$TIDEWATER_MYSQL_PORT" -u tidewater -p"$TIDEWATER_MYSQL_PASSWORD" --batch --skip-column-names "$@"; }

step "creating the shop database in MariaDB (kept between runs)"
my <<'SQL'
CREATE DATABASE IF NOT EXISTS shop;
USE shop;
CREATE TABLE IF NOT EXISTS customers (
  id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200), vip BOOLEAN DEFAULT FALSE);
CREATE TABLE IF NOT EXISTS orders (
  id BIGINT PRIMARY KEY, customer_id BIGINT, status ENUM('new','paid','shipped') NOT NULL,
  amount DECIMAL(12,2) NOT NULL, created_at DATETIME(6) NOT NULL);
INSERT IGNORE INTO customers
  SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com'), seq % 10 = 0 FROM seq_1_to_200;
INSERT IGNORE INTO orders
  SELECT seq, 1 + seq % 200, 'new', (seq % 500) + 0.99, TIMESTAMP'2026-11-01 08:00:00' + INTERVAL (seq % 5) DAY
  FROM seq_1_to_1000;
SQL

lake=/var/lib/tidewater/lake
# The lake's tables hold Kafka checkpoints (offsets) and the capture keeps
# its positions in Kafka: a lake written from another broker store (one
# wiped since, as scripts/test.sh and `scripts/services.sh wipe kafka` do)
# can never follow the new topics, and its sinks rightly stop. Such a lake is
# removed and built again from the sources' snapshots. The store is known by
# the random id scripts/services.sh makes with it.
store=$TIDEWATER_SERVICES_DIR/kafka/store-id
fed_by=/var/lib/tidewater/lake.broker-store
store_id=$(cat "$store" 2>/dev/null) && [[ -n $store_id ]] || fail "the broker's store id $store is missing though the broker runs (scripts/services.sh restart kafka makes one)"
if [[ -d $lake && $(cat "$fed_by" 2>/dev/null) != "$store_id" ]]; then
  step "the lake in $lake was written from another broker store: removing it (the sources are snapshotted again)"
  rm -rf "$lake"
fi
mkdir -p "$(dirname "$fed_by")"
printf '%s\n' "$store_id" >"$fed_by"

admin=${TIDEWATER_ADMIN_ADDR:-127.0.0.1:8089}
log=$(mktemp /tmp/tidewater-quickstart.XXXXXX.log)
step "running tidewater (capture and sink) on pipelines/shop-postgres.yaml and pipelines/shop-mysql.yaml; log: $log"
"$tidewater" run --role all --standalone --admin-addr "$admin" pipelines/shop-postgres.yaml pipelines/shop-mysql.yaml >"$log" 2>&1 &
daemon=$!
stop_daemon() {
  if kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
}
trap stop_daemon EXIT

for _ in $(seq 1 60); do
  "$tidewater" status --admin-addr "$admin" >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { tail -20 "$log" >&2; fail "tidewater exited"; }
  sleep 1
done

step "a live workload on both: inserts, updates, deletes, and orders moved to another day"
base=$(pg -d shop -Atc "SELECT coalesce(max(id), 0) FROM orders")
mybase=$(my -D shop -e "SELECT COALESCE(MAX(id), 0) FROM orders")
for round in 1 2 3; do
  pg -d shop <<SQL
BEGIN;
INSERT INTO orders
  SELECT $base + $round * 1000 + g, 1 + g % 200, 'new', g + 0.5, now() - (g % 3) * interval '1 day', NULL
  FROM generate_series(1, 100) g;
UPDATE orders SET status = 'paid' WHERE id % 7 = $round;
UPDATE orders SET status = 'shipped', amount = amount + 1 WHERE id % 11 = $round AND status = 'paid';
DELETE FROM orders WHERE id % 97 = $round;
UPDATE orders SET created_at = created_at + interval '2 days' WHERE id % 53 = $round;
UPDATE customers SET vip = NOT vip WHERE id % 17 = $round;
COMMIT;
SQL
  my -D shop <<SQL
BEGIN;
INSERT INTO orders
  SELECT $mybase + $round * 1000 + seq, 1 + seq % 200, 'new', seq + 0.5, NOW(6) - INTERVAL (seq % 3) DAY
  FROM seq_1_to_100;
UPDATE orders SET status = 'paid' WHERE id % 7 = $round;
UPDATE orders SET status = 'shipped', amount = amount + 1 WHERE id % 11 = $round AND status = 'paid';
DELETE FROM orders WHERE id % 97 = $round;
UPDATE orders SET created_at = created_at + INTERVAL 2 DAY WHERE id % 53 = $round;
UPDATE customers SET vip = NOT vip WHERE id % 17 = $round;
COMMIT;
SQL
  sleep 1
done

step "waiting until the lake equals Postgres and MariaDB (the sinks commit every 10 s)"
export PYTHONPATH=$PWD/tests/interop
python=${TIDEWATER_PYTHON:-python3}
# The same fingerprint on both sides: every order's id, status, amount and
# creation second, in id order.
want() {
  pg -d shop -Atc "SELECT count(*) || ' ' || md5(coalesce(string_agg(id || ',' || status || ',' || amount || ',' || floor(extract(epoch FROM created_at))::bigint, ';' ORDER BY id), ''))
                   FROM orders"
}
# MariaDB's DATETIME is a local date-time: its seconds as if UTC on both sides.
want_my() {
  my -D shop -e "SET SESSION group_concat_max_len = 100000000, time_zone = '+00:00';
                 SELECT CONCAT(COUNT(*), ' ', MD5(IFNULL(GROUP_CONCAT(CONCAT(id, ',', status, ',', amount, ',', UNIX_TIMESTAMP(created_at) DIV 1) ORDER BY id SEPARATOR ';'), ''))) FROM orders"
}
got() {
  "$python" - "$lake/$1" <<'PY'
import datetime, hashlib, sys
from hudi import HudiReadOptions, HudiTableBuilder
def seconds(t):
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp())
try:
    table = HudiTableBuilder.from_base_uri("file://" + sys.argv[1]).build()
    rows = [r for b in table.read(HudiReadOptions()) for r in b.to_pylist()]
except Exception as e:  # not created yet
    print("none", e)
    sys.exit(0)
rows.sort(key=lambda r: r["id"])
text = ";".join(f'{r["id"]},{r["status"]},{r["amount"]},{seconds(r["created_at"])}' for r in rows)
print(len(rows), hashlib.md5(text.encode()).hexdigest())
PY
}
caught_up=0
for _ in $(seq 1 90); do
  w=$(want)
  g=$(got public_orders)
  wm=$(want_my)
  gm=$(got shop_orders)
  if [[ $w == "$g" && $wm == "$gm" ]]; then
    caught_up=1
    break
  fi
  kill -0 "$daemon" 2>/dev/null || { tail -20 "$log" >&2; fail "tidewater exited"; }
  # A stopped table never catches up: say why now rather than after the wait.
  if grep -aq 'table stopped' "$log"; then
    grep -a ERROR "$log" | tail -8 >&2 || true
    fail "a lake table stopped (its error is above)"
  fi
  sleep 2
done
[[ $caught_up == 1 ]] || { grep -a ERROR "$log" | tail -8 >&2; tail -5 "$log" >&2; fail "the lake did not catch up: postgres '$w', lake '$g'; mariadb '$wm', lake '$gm'"; }
echo "orders in Postgres and in the lake: $w (count, fingerprint)"
echo "orders in MariaDB and in the lake:  $wm (count, fingerprint)"

step "queries read back from the Hudi tables by hudi-rs"
"$python" - "$lake" <<'PY'
import collections, sys
from decimal import Decimal
from hudi import HudiReadOptions, HudiTableBuilder

def read(name):
    table = HudiTableBuilder.from_base_uri(f"file://{sys.argv[1]}/{name}").build()
    return [r for b in table.read(HudiReadOptions()) for r in b.to_pylist()]

orders = read("public_orders")
by_status = collections.defaultdict(lambda: [0, Decimal(0)])
for r in orders:
    by_status[r["status"]][0] += 1
    by_status[r["status"]][1] += r["amount"]
print("orders by status (lake table public_orders):")
for status, (n, total) in sorted(by_status.items()):
    print(f"  {status:<8} {n:>6} orders  {total:>12} total")
days = collections.Counter(r["created_at_day"] for r in orders)
print("orders per day partition:", ", ".join(f"{d}: {n}" for d, n in sorted(days.items())))
print("card_number in the lake:", "excluded" if "card_number" not in orders[0] else "present")
customers = read("public_customers")
print(f"customers: {len(customers)}, vip: {sum(1 for c in customers if c['vip'])}")
my_orders = read("shop_orders")
statuses = collections.Counter(r["status"] for r in my_orders)
print("MariaDB orders by status (lake table shop_orders):", ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
my_customers = read("shop_customers")
print(f"MariaDB customers: {len(my_customers)}, vip: {sum(1 for c in my_customers if c['vip'])}")
PY

step "tidewater status"
"$tidewater" status --admin-addr "$admin"

step "stopping tidewater (SIGTERM: flush, commit, exit 0)"
kill -TERM "$daemon"
wait "$daemon" || fail "tidewater did not exit cleanly (log: $log)"
trap - EXIT

step "done: Postgres and MariaDB -> Kafka -> Hudi in $lake"
