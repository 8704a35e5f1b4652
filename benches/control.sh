#!/usr/bin/env bash
# Control-plane bench: one `ferry control` on SQLite against one on
# PostgreSQL (Debian's server, made with initdb in a temporary directory),
# side by side in one run. Prints, for each: heartbeats a second it absorbs
# (32 nodes beating back to back) and the CPU it spends per 1,000 beats
# (PostgreSQL's own processes counted too); 500 nodes beating once a second
# (latency p50/p99, failures); publish-check latency p50/p99. Then two
# control processes on one PostgreSQL: 200 nodes beat through both URLs,
# the first is SIGKILLed, and the longest time a node went without a
# successful beat is what the failover cost it.
#   usage: benches/control.sh    env: SECONDS_PER_RUN=10 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-3}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pg_bin" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q postgresql
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
cargo build --release --locked -q -p ferry -p control-load
ferry=target/release/ferry
load=target/release/control-load
work=$(mktemp -d)
pids=()
as_pg() { if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" -ne 0 ] || chown nobody:nogroup "$work"
pgport=18390
as_pg "$pg_bin/initdb" -D "$work/pg" -A trust -U ferry -E UTF8 >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" \
  -o "-p $pgport -k $work -c listen_addresses=127.0.0.1 -c max_connections=200" -w start >/dev/null
dburl="postgres://ferry@127.0.0.1:$pgport/postgres"
token=bench-admin-token-0123456789
hz=$(getconf CLK_TCK)
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
pg_pids() { pgrep -f "postgres.*$work" | tr '\n' ' '; }
start_control() { # port [database_url]
  local port=$1 url=${2:-}
  mkdir -p "$work/c$port"
  FERRY_ADMIN_TOKEN=$token FERRY_LOG=warn FERRY_CONTROL__DATABASE_URL=$url \
    FERRY_STREAMS='[{name="bench",key="bench-key-0123456789"}]' \
    $ferry control --data-dir "$work/c$port" --http-listen 127.0.0.1:$port & pids+=($!)
  last_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "control on $port did not start" >&2; exit 1
}
median() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%s (%s..%s)", m, a[1], a[NR]}'; }
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1==k {print $2}'; }
declare -A absorb cpu beat_p99 beat_fail auth_p50 auth_p99
for backend in sqlite postgres; do
  for r in $(seq "$rounds"); do
    port=$((18391 + r))
    if [ "$backend" = postgres ]; then start_control $port "$dburl"; else start_control $port; fi
    cpid=$last_pid
    sleep 1
    watch="$cpid"; [ "$backend" = sqlite ] || watch="$cpid $(pg_pids)"
    t0=$(ticks $watch)
    out=$($load --urls http://127.0.0.1:$port --token $token absorb --seconds "$secs")
    t1=$(ticks $watch)
    ok=$(echo "$out" | field ok)
    absorb[$backend]+="$(echo "$out" | field per_s) "
    cpu[$backend]+="$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$ok" 'BEGIN {printf "%.3f", t / hz / n * 1000}') "
    out=$($load --urls http://127.0.0.1:$port --token $token beats --nodes 500 --seconds "$secs")
    beat_p99[$backend]+="$(echo "$out" | field p99_ms) "
    beat_fail[$backend]+="$(echo "$out" | field failed) "
    out=$($load --urls http://127.0.0.1:$port --token $token auth --key bench-key-0123456789 --rate 25 --seconds 8)
    auth_p50[$backend]+="$(echo "$out" | field p50_ms) "
    auth_p99[$backend]+="$(echo "$out" | field p99_ms) "
    kill -9 "$cpid"; wait "$cpid" 2>/dev/null || true
  done
done
printf '\n%-34s %24s %24s\n' "median (range) of $rounds runs" sqlite postgres
row() { printf '%-34s %24s %24s\n' "$1" "$(echo $2 | tr ' ' '\n' | median)" "$(echo $3 | tr ' ' '\n' | median)"; }
row "heartbeats/s absorbed" "${absorb[sqlite]}" "${absorb[postgres]}"
row "CPU-s per 1000 beats" "${cpu[sqlite]}" "${cpu[postgres]}"
row "500 nodes @1/s: beat p99 ms" "${beat_p99[sqlite]}" "${beat_p99[postgres]}"
row "500 nodes @1/s: failed beats" "${beat_fail[sqlite]}" "${beat_fail[postgres]}"
row "publish check p50 ms" "${auth_p50[sqlite]}" "${auth_p50[postgres]}"
row "publish check p99 ms" "${auth_p99[sqlite]}" "${auth_p99[postgres]}"
# Failover: two control processes on one PostgreSQL, the first killed.
gaps=""
for r in $(seq "$rounds"); do
  start_control 18401 "$dburl"; first=$last_pid
  start_control 18402 "$dburl"; second=$last_pid
  $load --urls http://127.0.0.1:18401,http://127.0.0.1:18402 --token $token beats --nodes 200 --seconds 12 > "$work/failover" &
  loadpid=$!
  sleep 5
  kill -9 "$first"; wait "$first" 2>/dev/null || true
  wait $loadpid
  gaps+="$(field longest_gap_s < "$work/failover") "
  kill -9 "$second"; wait "$second" 2>/dev/null || true
done
printf '%-34s %24s\n' "control killed: longest beat gap s" "$(echo $gaps | tr ' ' '\n' | median)"
echo "(a node beats every 1 s; a gap above 1 s is what the failover cost it)"
