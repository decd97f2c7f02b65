#!/usr/bin/env bash
# A two-node Ray cluster on 127.0.0.1 for tests: a head and a second node, each with its own
# ports, temp dir and custom resource ({"head": 1} and {"node2": 1}), token auth on.
#
#   bash .ci/ray/cluster.sh up   RUN_DIR   start both nodes, wait until both are ALIVE,
#                                          write RUN_DIR/ray.env; on failure exit 1 after
#                                          printing Ray's log tails (run `down` after it anyway)
#   bash .ci/ray/cluster.sh down RUN_DIR   kill, by PID, every process of the cluster
#   bash .ci/ray/cluster.sh logs RUN_DIR   print the tails of Ray's logs
#
# `up` must run in a network namespace whose only interface is loopback (.ci/ray/run.sh makes
# one): elsewhere Ray swaps 127.0.0.1 for the machine's routable address and listens on every
# interface. The namespace also makes the fixed ports below private to one run.
#
# RUN_DIR holds everything: the nodes' temp dirs (head/, node2/: Ray's sessions and logs), a
# private HOME (so that no ~/.ray/auth_token applies) and TMPDIR, the token (token, 0600),
# `ray start`'s output (head.start.log, node2.start.log), the processes after start-up (pids)
# and ray.env. `down` finds the cluster's processes by their environment, working directory,
# output files and parentage (see cluster_pids) and kills them by PID: SIGTERM, then SIGKILL
# after 2 s (Ray's core processes ignore SIGTERM for about 10 s). It never runs `ray stop`,
# which would kill every Ray on the machine.
set -euo pipefail

venv=${CORTEX_RAY_VENV:-$HOME/.cache/cortex-ci/ray-venv}
case $venv in /*) ;; *) venv=$PWD/$venv ;; esac

# Logical sizes (Ray schedules by them; it does not enforce them). One CPU per node: a job's
# JobSupervisor and driver ask for 0 CPUs (and land on the head) unless the job gives
# entrypoint_num_cpus/_memory/_resources, so drivers do not need a CPU of their own; an actor
# asks for 1 CPU at placement unless it says num_cpus=0, so one such actor fits per node.
head_cpus=${CORTEX_RAY_HEAD_CPUS:-1}
node2_cpus=${CORTEX_RAY_NODE2_CPUS:-1}
object_store_bytes=100000000   # per node, in /dev/shm (or /tmp when /dev/shm is smaller)
memory_bytes=2147483648        # per node: the "memory" resource actors can ask for

# Fixed ports, all below the ephemeral range (32768-60999) so that no port Ray picks at random
# for itself can take one before its node binds it.
gcs_port=6379
dashboard_port=8265
client_port=10001
#             node-manager object-manager agent-listen agent-grpc metrics runtime-env workers
head_ports=(6380 6381 6385 6382 6383 6384 11000 11099)
node2_ports=(6480 6481 6485 6482 6483 6484 11100 11199)

wait_up_seconds=${CORTEX_RAY_UP_TIMEOUT:-180}

say() { printf 'ray cluster: %s\n' "$*" >&2; }

usage() {
  echo "usage: $0 up|down|logs RUN_DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
run_dir=$2
case $run_dir in
  /*) ;;
  *) run_dir=$PWD/$run_dir ;;
esac
case $run_dir in
  *[[:space:]]*) say "RUN_DIR must not contain spaces: $run_dir"; exit 2 ;;
esac
run_dir=${run_dir%/}
marker="CORTEX_RAY_RUN=$run_dir"
# Out of RUN_DIR: a working directory under it marks the cluster's processes (cluster_pids).
cd /

# --- processes ---------------------------------------------------------------------------
# The PIDs of the cluster's live processes (of NODE's only, if given). A process is the
# cluster's when any of these holds:
#   - its environment has CORTEX_RAY_RUN=RUN_DIR (and CORTEX_RAY_NODE=NODE): `ray start` and
#     the daemons it leaves behind get them from ray_start;
#   - its working directory, stdout or stderr is under RUN_DIR (RUN_DIR/NODE): `ray start`
#     runs in RUN_DIR/NODE, and Ray sends every worker's, agent's and job driver's output to
#     its node's log directory. This finds the processes that call setproctitle (Ray workers
#     `ray::...`, the agents, the dashboard's modules), which overwrites /proc/PID/environ,
#     even when their raylet was killed and they were re-parented;
#   - its parent is one of the cluster's (a job's driver may chdir and redirect its output).
# Zombies are left out: they are dead already. This script and its callers are never listed.
# shellcheck disable=SC2086 # `set -- $rest` splits the fields of /proc/PID/stat
cluster_pids() {
  local node=${1:-} dir pid kv has_run has_node line rest ppid
  local prefix=$run_dir${node:+/$node}
  local -A ours=() children=() skip=()
  # This shell and its ancestors (run.sh, the command that called it).
  pid=$$
  while [ -n "$pid" ] && [ "$pid" != 0 ]; do
    skip[$pid]=1
    read -r line 2>/dev/null <"/proc/$pid/stat" || break
    rest=${line##*) }
    set -- $rest
    pid=$2
  done
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    read -r line 2>/dev/null <"$dir/stat" || continue
    rest=${line##*) }
    set -- $rest
    [ "$1" != Z ] || continue
    ppid=$2
    children[$ppid]="${children[$ppid]:-} $pid"
    [ -z "${skip[$pid]:-}" ] || continue
    has_run=0
    has_node=0
    [ -n "$node" ] || has_node=1
    # Pure bash: no fork per process.
    while IFS= read -r -d '' kv; do
      [ "$kv" != "$marker" ] || has_run=1
      [ "$kv" != "CORTEX_RAY_NODE=$node" ] || has_node=1
    done 2>/dev/null <"$dir/environ" || true
    if [ $has_run = 1 ] && [ $has_node = 1 ]; then ours[$pid]=1; fi
  done
  # One find for every working directory, stdout and stderr.
  while read -r line; do
    pid=${line#/proc/}
    pid=${pid%%/*}
    [ -n "${skip[$pid]:-}" ] || ours[$pid]=1
  done < <(find /proc/[0-9]*/cwd /proc/[0-9]*/fd/1 /proc/[0-9]*/fd/2 -maxdepth 0 \
    \( -lname "$prefix" -o -lname "$prefix/*" \) 2>/dev/null || true)
  # Descendants.
  local -a queue=("${!ours[@]}")
  local child
  while [ ${#queue[@]} -gt 0 ]; do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    for child in ${children[$pid]:-}; do
      if [ -z "${ours[$child]:-}" ] && [ -z "${skip[$child]:-}" ]; then
        ours[$child]=1
        queue+=("$child")
      fi
    done
  done
  for pid in "${!ours[@]}"; do
    if alive "$pid"; then echo "$pid"; fi
  done | sort -n
}

# Whether PID is alive and not a zombie.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# The PID of the process named COMM among the marked ones of NODE.
node_pid() {
  local node=$1 comm=$2 pid
  for pid in $(cluster_pids "$node"); do
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# Kills every process of the cluster (cluster_pids): those of the start-up, recorded in
# RUN_DIR/pids, and those started later, found the same way; a recorded PID now used by an
# unrelated process is left alone. SIGTERM, SIGKILL after 2 s, then SIGKILL again until none
# is left (10 s at most).
down() {
  local pids pid tick round=0
  pids=$(cluster_pids)
  if [ -z "$pids" ]; then
    say "nothing of $run_dir is running"
    return 0
  fi
  say "stopping $(wc -w <<<"$pids") processes: $(tr '\n' ' ' <<<"$pids")"
  # shellcheck disable=SC2086 # one PID per word
  kill -TERM $pids 2>/dev/null || true
  for tick in $(seq 20); do
    pids=$(for pid in $pids; do if alive "$pid"; then echo "$pid"; fi; done)
    [ -n "$pids" ] || break
    [ "$tick" = 20 ] || sleep 0.1
  done
  while :; do
    pids=$(cluster_pids)
    [ -n "$pids" ] || break
    round=$((round + 1))
    if [ $round -gt 100 ]; then
      say "error: still running after SIGKILL: $(tr '\n' ' ' <<<"$pids")"
      return 1
    fi
    [ $round -gt 1 ] || say "SIGKILL: $(tr '\n' ' ' <<<"$pids")"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  say "stopped"
}

# --- logs ----------------------------------------------------------------------------------
# The part of Ray's logs that says why something failed: `ray start`'s output, the last lines
# of every non-empty *.err and job driver log, the warnings and errors of the raylets and the
# GCS (their .out files are mostly periodic state dumps), the dashboard's last lines without
# its route listing.
logs() {
  local node f logs_dir
  for node in head node2; do
    logs_dir=$run_dir/$node/session_latest/logs
    if [ -f "$run_dir/$node.start.log" ]; then
      printf '\n===== %s: ray start (last 30 lines) =====\n' "$node"
      tail -n 30 "$run_dir/$node.start.log"
    fi
    [ -d "$logs_dir" ] || continue
    for f in "$logs_dir"/*.err "$logs_dir"/job-driver-*.log; do
      [ -s "$f" ] || continue
      printf '\n===== %s (last 20 lines) =====\n' "${f#"$run_dir"/}"
      tail -n 20 "$f"
    done
    for f in "$logs_dir"/raylet.out "$logs_dir"/gcs_server.out; do
      [ -s "$f" ] || continue
      printf '\n===== %s (last 20 warnings and errors) =====\n' "${f#"$run_dir"/}"
      grep -E '^\[[0-9-]+ [0-9:,]+ [WEF] ' "$f" | tail -n 20 || true
    done
    for f in "$logs_dir"/dashboard.log "$logs_dir"/dashboard_agent.log; do
      [ -s "$f" ] || continue
      printf '\n===== %s (last 20 lines) =====\n' "${f#"$run_dir"/}"
      grep -v 'ResourceRoute' "$f" | tail -n 20 || true
    done
  done
}

fail() {
  say "error: $*"
  logs >&2 || true
  say "error: $* (Ray's logs: $run_dir/{head,node2}/session_latest/logs)"
  exit 1
}

# --- up ------------------------------------------------------------------------------------
# Runs `ray start` for NODE with a private HOME, TMPDIR and the marker, no RAY_* variable from
# the caller except the token-auth pair, in RUN_DIR/NODE. A subshell: it changes directory.
# RAY_RUNTIME_ENV_BEARER_TOKEN: the nodes download a cortex server's bundles with the cluster's
# token (what `cortex server --engine ray` asks for).
ray_start() (
  local node=$1
  shift
  local -a unset_ray=()
  local v
  for v in $(compgen -e); do
    case $v in RAY_* | CORTEX_RAY_NODE) unset_ray+=(-u "$v") ;; esac
  done
  mkdir -p "$run_dir/$node"
  # In RUN_DIR/NODE: the daemons keep it as their working directory (see cluster_pids).
  cd "$run_dir/$node"
  timeout 120 env "${unset_ray[@]}" \
    HOME="$run_dir/home" TMPDIR="$run_dir/tmp" PATH="$venv/bin:$PATH" \
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$token" RAY_RUNTIME_ENV_BEARER_TOKEN="$token" \
    RAY_USAGE_STATS_ENABLED=0 \
    CORTEX_RAY_RUN="$run_dir" CORTEX_RAY_NODE="$node" \
    "$venv/bin/ray" start --disable-usage-stats --temp-dir "$run_dir/$node" \
    --node-ip-address 127.0.0.1 "$@" >"$run_dir/$node.start.log" 2>&1
)

node_args() {
  local -a p=("$@")
  echo --node-manager-port "${p[0]}" --object-manager-port "${p[1]}" \
    --dashboard-agent-listen-port "${p[2]}" --dashboard-agent-grpc-port "${p[3]}" \
    --metrics-export-port "${p[4]}" --runtime-env-agent-port "${p[5]}" \
    --min-worker-port "${p[6]}" --max-worker-port "${p[7]}" \
    --object-store-memory "$object_store_bytes" --memory "$memory_bytes"
}

# GET PATH on the dashboard with the token; the body on stdout, non-zero when not a 2xx.
api_get() {
  curl -fsS --max-time 5 -H "Authorization: Bearer $token" "http://127.0.0.1:$dashboard_port$1"
}

up() {
  [ -x "$venv/bin/ray" ] || { say "no Ray in $venv: run .ci/ray/install.sh first"; exit 1; }
  local ifaces
  ifaces=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
  if [ "$ifaces" != "lo " ]; then
    say "error: this network namespace has interfaces other than lo ($ifaces): Ray would" \
      "listen on the machine's address. Use .ci/ray/run.sh, which runs in a fresh namespace."
    exit 1
  fi
  ip -o link show lo | grep -q '[<,]UP[,>]' || ip link set lo up
  if [ -n "$(cluster_pids)" ]; then
    say "error: a cluster of $run_dir is running already"
    exit 1
  fi

  mkdir -p "$run_dir/home" "$run_dir/tmp"
  chmod 700 "$run_dir"
  token=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s' "$token" >"$run_dir/token")

  local t0=$SECONDS
  say "starting the head (temp dir $run_dir/head)"
  # shellcheck disable=SC2046 # node_args prints words
  ray_start head --head --port "$gcs_port" --dashboard-host 127.0.0.1 \
    --dashboard-port "$dashboard_port" --ray-client-server-port "$client_port" \
    --num-cpus "$head_cpus" --resources '{"head": 1}' $(node_args "${head_ports[@]}") ||
    fail "ray start of the head failed (status $?)"
  local t_head=$SECONDS
  say "starting the second node (temp dir $run_dir/node2)"
  # shellcheck disable=SC2046
  ray_start node2 --address "127.0.0.1:$gcs_port" --num-cpus "$node2_cpus" \
    --resources '{"node2": 1}' $(node_args "${node2_ports[@]}") ||
    fail "ray start of the second node failed (status $?)"

  # Polls the State API until both nodes are ALIVE, and every node's raylet still runs.
  local deadline=$((SECONDS + wait_up_seconds)) nodes="" alive_count=0
  while :; do
    if nodes=$(api_get /api/v0/nodes 2>/dev/null); then
      alive_count=$(jq '[.data.result.result[] | select(.state == "ALIVE")] | length' \
        <<<"$nodes" 2>/dev/null || echo 0)
      [ "$alive_count" != 2 ] || break
    fi
    node_pid head raylet >/dev/null || fail "the head's raylet exited"
    node_pid node2 raylet >/dev/null || fail "the second node's raylet exited"
    [ $SECONDS -lt $deadline ] ||
      fail "not 2 ALIVE nodes after ${wait_up_seconds}s (ALIVE: $alive_count; last answer: ${nodes:0:300})"
    sleep 0.2
  done
  local t_ready=$SECONDS

  local head_id node2_id head_raylet node2_raylet head_pids node2_pids
  head_id=$(jq -r '.data.result.result[] | select(.resources_total.head) | .node_id' <<<"$nodes")
  node2_id=$(jq -r '.data.result.result[] | select(.resources_total.node2) | .node_id' <<<"$nodes")
  head_raylet=$(node_pid head raylet) || fail "no raylet for the head"
  node2_raylet=$(node_pid node2 raylet) || fail "no raylet for the second node"
  head_pids=$(cluster_pids head | tr '\n' ',')
  node2_pids=$(cluster_pids node2 | tr '\n' ',')
  # Every process of the cluster now, with its command line, for the record (down() finds
  # later ones through the marker).
  local pid
  for pid in $(cluster_pids); do
    printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)"
  done >"$run_dir/pids"

  # KEY=VALUE lines without quotes or spaces: both `source`-able and trivial to parse.
  cat >"$run_dir/ray.env" <<EOF
CORTEX_TEST_RAY_ADDRESS=http://127.0.0.1:$dashboard_port
CORTEX_TEST_RAY_TOKEN_FILE=$run_dir/token
CORTEX_TEST_RAY_GCS_ADDRESS=127.0.0.1:$gcs_port
CORTEX_TEST_RAY_VERSION=$("$venv/bin/python" -c 'import ray; print(ray.__version__)')
CORTEX_TEST_RAY_PYTHON=$venv/bin/python
CORTEX_TEST_RAY_RUN_DIR=$run_dir
CORTEX_TEST_RAY_HEAD_NODE_ID=$head_id
CORTEX_TEST_RAY_HEAD_TEMP_DIR=$run_dir/head
CORTEX_TEST_RAY_HEAD_RAYLET_PID=$head_raylet
CORTEX_TEST_RAY_HEAD_PIDS=${head_pids%,}
CORTEX_TEST_RAY_NODE2_NODE_ID=$node2_id
CORTEX_TEST_RAY_NODE2_TEMP_DIR=$run_dir/node2
CORTEX_TEST_RAY_NODE2_RAYLET_PID=$node2_raylet
CORTEX_TEST_RAY_NODE2_PIDS=${node2_pids%,}
EOF
  say "up: 2 nodes ALIVE in $((t_ready - t0)) s (head $((t_head - t0)) s)," \
    "$(wc -l <"$run_dir/pids") processes; $run_dir/ray.env"
}

case $cmd in
  up) up ;;
  down) down ;;
  logs) logs ;;
  *) usage ;;
esac
