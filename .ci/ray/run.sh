#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions called from traps look unreachable
# Runs a command next to a real two-node Ray cluster, in a network namespace that has only
# loopback, and kills every process of the cluster by PID afterwards, whatever happened.
#
#   bash .ci/ray/run.sh                 the smoke check (.ci/ray/smoke.sh)
#   bash .ci/ray/run.sh 'COMMAND'       COMMAND run by bash -c
#   bash .ci/ray/run.sh PROGRAM ARG...  PROGRAM run with its arguments
#
# The command sees CORTEX_TEST_RAY_ENV (the path of ray.env) and every variable of ray.env
# (CORTEX_TEST_RAY_ADDRESS, CORTEX_TEST_RAY_TOKEN_FILE, ...; see cluster.sh). The exit status
# is the command's (1 when the cluster did not come up). The namespace has no network beyond
# loopback: build what the command needs before (e.g. `cargo test --no-run`; cargo cannot
# fetch crates in there).
#
# Needs root (or unprivileged user namespaces) for `unshare`, and .ci/ray/install.sh run first.
# Set CORTEX_RAY_KEEP=1 to keep the run directory (Ray's logs) after a success; it is always
# kept after a failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- outside: re-execute in fresh network and PID namespaces ------------------------------
# The PID namespace is a second line of defence: when its first process (the inner run.sh)
# ends, however it ends, the kernel kills every process left in it.
if [ "${CORTEX_RAY_IN_NETNS:-}" != "$$" ]; then
  command -v unshare >/dev/null 2>&1 || { echo "ray run: no unshare: run .ci/ray/install.sh" >&2; exit 1; }
  ns_args=(--net --pid --fork --mount-proc --kill-child=TERM)
  [ "$(id -u)" = 0 ] || ns_args+=(--map-root-user)
  if ! err=$(unshare "${ns_args[@]}" true 2>&1); then
    echo "ray run: cannot make a network and PID namespace (unshare ${ns_args[*]}): $err" >&2
    exit 1
  fi
  # In the new PID namespace the inner script is PID 1: that is how it knows where it is.
  unshare "${ns_args[@]}" env CORTEX_RAY_IN_NETNS=1 bash "$here/run.sh" "$@" &
  ns_pid=$!
  # unshare ignores SIGTERM and SIGINT while it waits: hand them to the inner script, as
  # SIGTERM (a background job of a script starts with SIGINT ignored, and keeps it so).
  forward() {
    local inner
    inner=$(cat "/proc/$ns_pid/task/$ns_pid/children" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$inner" ] || kill -TERM $inner 2>/dev/null || true
  }
  trap forward TERM INT HUP
  while :; do
    status=0
    wait "$ns_pid" || status=$?
    # A trapped signal interrupts `wait` with a status above 128: wait again for the end.
    kill -0 "$ns_pid" 2>/dev/null || break
  done
  exit "$status"
fi

# --- inside ----------------------------------------------------------------------------------
unset CORTEX_RAY_IN_NETNS   # a run.sh started by the command makes a namespace of its own
say() { printf 'ray run: %s\n' "$*" >&2; }

ip link set lo up
ifaces=$(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')
[ "$ifaces" = "lo " ] || { say "error: not a loopback-only namespace ($ifaces)"; exit 1; }

run_dir=$(mktemp -d /tmp/cortex-ray.XXXXXX)
status=0
cmd_pid=
cleaned=0
cleanup() {
  [ "$cleaned" = 0 ] || return 0
  cleaned=1
  trap - INT TERM HUP
  if [ -n "${cmd_pid:-}" ] && kill -0 "$cmd_pid" 2>/dev/null; then
    say "stopping the command (PID $cmd_pid)"
    kill -TERM "$cmd_pid" 2>/dev/null || true
  fi
  if ! bash "$here/cluster.sh" down "$run_dir"; then
    say "error: could not stop every process of the cluster"
    status=1
  fi
  if [ "$status" = 0 ] && [ "${CORTEX_RAY_KEEP:-}" != 1 ]; then
    rm -rf -- "$run_dir"
  else
    say "run directory kept: $run_dir"
  fi
  exit "$status"
}
trap 'status=$?; cleanup' EXIT
trap 'status=143; exit 143' TERM INT HUP

if ! bash "$here/cluster.sh" up "$run_dir"; then
  status=1
  exit 1
fi

export CORTEX_TEST_RAY_ENV=$run_dir/ray.env
set -a
# shellcheck source=/dev/null # written by cluster.sh
. "$CORTEX_TEST_RAY_ENV"
set +a

# The command runs in the background so that a signal reaches the trap at once.
if [ $# -eq 0 ]; then
  bash "$here/smoke.sh" &
elif [ $# -eq 1 ]; then
  bash -c "$1" &
else
  "$@" &
fi
cmd_pid=$!
cmd_status=0
wait "$cmd_pid" || cmd_status=$?
if [ "$cmd_status" != 0 ]; then
  say "the command exited with status $cmd_status; Ray's logs:"
  bash "$here/cluster.sh" logs "$run_dir" >&2 || true
fi
status=$cmd_status
exit "$cmd_status"
