#!/usr/bin/env bash
# Loads the webhook server from outside with wrk (Debian package `wrk`): GET /health,
# rejected webhook requests (401 with a wrong key, 429 once the failure limit is reached)
# and accepted duplicate pushes, which coalesce. Prints wrk's summary of each run and the
# server's resident memory. Usage: benches/http_load.sh [seconds per run] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-10}"
runs="${2:-3}"
connections=64
key="load-test-webhook-key-0123456789"

cargo build --release --quiet
data="$(mktemp -d)"
port=18088
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

start() {
    # Rancher is unreachable on purpose: the intake is measured, and accepted pushes wait
    # in the journal, coalesced.
    env -i PATH="$PATH" BIND_ADDRESS=127.0.0.1 BIND_PORT="$port" \
        AUTOREDEPLOY_DATA_DIR="$data" DOCKER_HUB_KEY="$key" \
        RANCHER_HOST=http://127.0.0.1:9 RANCHER_API_KEY=bench RANCHER_API_SECRET=bench \
        AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE="$1" RUST_LOG=error \
        target/release/autoredeploy >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null && return
        sleep 0.05
    done
    echo "the server did not start" >&2
    exit 1
}

memory() {
    grep -E '^(VmRSS|VmHWM)' "/proc/$pid/status" | tr -s ' \n' ' '
    echo
}

load() {
    local name="$1"
    shift
    for run in $(seq "$runs"); do
        echo "== $name, run $run"
        wrk -t2 -c"$connections" -d"${seconds}s" --latency "$@" |
            grep -E 'Requests/sec|Latency  |99%|Non-2xx'
    done
}

start 5
echo "== idle: $(memory)"
load "GET /health" "http://127.0.0.1:$port/health"
load "webhook, wrong key: 429 after the first five" -s benches/wrk/push.lua \
    "http://127.0.0.1:$port/autoredeploy?key=wrong-key-0123456789"
echo "== after: $(memory)"
kill "$pid"; wait "$pid" 2>/dev/null || true

start 1000000000
load "webhook, wrong key: 401 (failure limit out of reach)" -s benches/wrk/push.lua \
    "http://127.0.0.1:$port/autoredeploy?key=wrong-key-0123456789"
kill "$pid"; wait "$pid" 2>/dev/null || true

rm -rf "${data:?}"/*
start 5
load "webhook, right key: accepted pushes, coalesced" -s benches/wrk/push.lua \
    "http://127.0.0.1:$port/autoredeploy?key=$key"
echo "== after: $(memory)"
