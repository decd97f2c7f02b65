#!/bin/bash
# The gateway's user-space instructions per proxied request, counted by callgrind: a measure
# that does not move with the machine's noise (timings on a small VM vary by +-15 % from one
# run to the next), for comparing two builds of the same code path.
#
#   bash bench/gateway_instructions.sh [BIN...]   (default: target/release/cortex)
#
# Each binary runs a server under `valgrind --tool=callgrind` with a no-op command API
# (examples/noop-worker); after a warm-up, 4,000 POSTs from 8 keep-alive clients are counted.
# Needs valgrind and curl; builds the release binary and the worker when no BIN is given.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-4000}
if [ $# -eq 0 ]; then
    cargo build --release --bin cortex --example noop-worker --manifest-path "$ROOT/Cargo.toml" >&2
    set -- "$ROOT/target/release/cortex"
else
    cargo build --release --example noop-worker --manifest-path "$ROOT/Cargo.toml" >&2
fi
WORKER="$ROOT/target/release/examples/noop-worker"

count() {
    local bin=$1 work port vp
    work=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    export CORTEX_CLI_CONFIG_DIR=$work/cli
    # No spare interpreter to count (older builds have none).
    local spares=()
    if "$bin" server --help | grep -- --spare-interpreters > /dev/null; then
        spares=(--spare-interpreters 0)
    fi
    CORTEX_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
        "$bin" server --listen 127.0.0.1:$port --data-dir "$work/data" "${spares[@]}" \
        > "$work/server.log" 2>&1 &
    vp=$!
    python3 - "$port" <<'PY'
import sys, time, urllib.request
end = time.monotonic() + 600
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=5)
        break
    except Exception:
        if time.monotonic() > end:
            raise SystemExit("the server did not start")
        time.sleep(0.1)
PY
    "$bin" env configure bench --endpoint http://127.0.0.1:$port --token "$(cat "$work/data/admin.token")" > /dev/null
    "$bin" env default bench > /dev/null
    mkdir -p "$work/noop"
    printf -- '- name: noop\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: ["%s"]\n' "$WORKER" > "$work/noop/cortex.yaml"
    (cd "$work/noop" && "$bin" deploy > /dev/null)
    python3 - "$port" 0 <<'PY'
import sys, time, http.client
port, n = int(sys.argv[1]), int(sys.argv[2])
end = time.monotonic() + 600
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/noop", body=b'{"x": 1}', headers={"Content-Type": "application/json"})
        if c.getresponse().status == 200:
            break
    except Exception:
        pass
    if time.monotonic() > end:
        raise SystemExit("the api did not answer")
    time.sleep(0.1)
PY
    posts() {
        python3 - "$port" "$1" <<'PY'
import sys, threading, http.client
port, n = int(sys.argv[1]), int(sys.argv[2])
def run(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(k):
        c.request("POST", "/noop", body=b'{"x": 1}', headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
threads = [threading.Thread(target=run, args=(n // 8,)) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
PY
    }
    posts 800
    callgrind_control -i on $vp > /dev/null 2>&1
    posts "$N"
    callgrind_control -i off $vp > /dev/null 2>&1
    callgrind_control -d $vp > /dev/null 2>&1
    kill $vp
    wait $vp 2> /dev/null || true
    local out total
    out=$(ls -S "$work"/cg.out* | head -1)
    total=$(callgrind_annotate "$out" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "| $(basename "$bin") | $((total / N)) |"
    rm -rf "$work"
}

echo "| build | user-space instructions per request |"
echo "|---|---|"
for bin in "$@"; do
    count "$bin"
done
