#!/usr/bin/env bash
# Proves that the cluster .ci/ray/run.sh started works the way the Ray engine will use it,
# over HTTP only: loopback-only listeners, token auth (401 without the token, 403 with a wrong
# one), a job submitted with POST /api/jobs/ whose driver places an actor on the second node
# through its custom resource, its status polled to SUCCEEDED, its logs, its deletion.
#
# Run by .ci/ray/run.sh (without a command); reads the variables of ray.env.
set -euo pipefail

: "${CORTEX_TEST_RAY_ADDRESS:?run this through .ci/ray/run.sh}"
addr=$CORTEX_TEST_RAY_ADDRESS
token=$(cat "$CORTEX_TEST_RAY_TOKEN_FILE")
job_timeout=${CORTEX_RAY_SMOKE_TIMEOUT:-120}

say() { printf 'ray smoke: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# curl with the token; prints the body, fails on a non-2xx answer.
api() {
  local method=$1 path=$2
  shift 2
  curl -fsS --max-time 10 -X "$method" -H "Authorization: Bearer $token" "$@" "$addr$path"
}
# The HTTP status of GET PATH with extra curl arguments.
status_of() {
  local path=$1
  shift
  curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$@" "$addr$path"
}

# --- loopback only ---------------------------------------------------------------------------
addrs=$(ip -o addr show | awk '{print $4}' | sort | tr '\n' ' ')
[ "$addrs" = "127.0.0.1/8 ::1/128 " ] || fail "the namespace has addresses other than loopback: $addrs"
listeners=$(ss -Hltn | awk '{print $4}')
bad=$(grep -Ev '^(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]|0\.0\.0\.0|\*|\[::\]):[0-9]+$' \
  <<<"$listeners" || true)
[ -z "$bad" ] || fail "listeners on other addresses: $bad"
n_all=$(wc -l <<<"$listeners")
n_lo=$(grep -Ec '^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):' <<<"$listeners" || true)
if [ "$n_all" = "$n_lo" ]; then
  say "$n_all TCP listeners, all on 127.0.0.1"
else
  say "$n_all TCP listeners, $n_lo on 127.0.0.1, the others on a wildcard address of this" \
    "namespace, whose only addresses are $addrs"
fi

# --- auth ------------------------------------------------------------------------------------
version=$(api GET /api/version | jq -r .ray_version)
[ "$version" = "$CORTEX_TEST_RAY_VERSION" ] || fail "dashboard says ray $version, expected $CORTEX_TEST_RAY_VERSION"
code=$(status_of /api/v0/nodes)
[ "$code" = 401 ] || fail "GET /api/v0/nodes without a token answered $code, not 401"
code=$(status_of /api/jobs/ -H "Authorization: Bearer 0${token:1}x")
[ "$code" = 403 ] || fail "GET /api/jobs/ with a wrong token answered $code, not 403"
say "ray $version; no token: 401, wrong token: 403"

# --- a job with an actor on the second node ------------------------------------------------
job_py=$CORTEX_TEST_RAY_RUN_DIR/smoke_job.py
cat >"$job_py" <<'EOF'
import ray

ray.init()


@ray.remote(num_cpus=0, resources={"node2": 1})
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()


print("smoke actor on node", ray.get(Where.remote().node.remote()), flush=True)
EOF
submission_id=cortex-smoke-$$-$RANDOM
body=$(jq -n --arg ep "$CORTEX_TEST_RAY_PYTHON $job_py" --arg id "$submission_id" \
  '{entrypoint: $ep, submission_id: $id, metadata: {cortex: "smoke"}}')
t0=$(date +%s%N)
answer=$(api POST /api/jobs/ -H 'Content-Type: application/json' -d "$body") ||
  fail "POST /api/jobs/ failed"
job_id=$(jq -r .submission_id <<<"$answer")
[ "$job_id" = "$submission_id" ] || fail "POST /api/jobs/ answered $answer"

deadline=$((SECONDS + job_timeout))
while :; do
  job=$(api GET "/api/jobs/$job_id") || fail "GET /api/jobs/$job_id failed"
  job_status=$(jq -r .status <<<"$job")
  case $job_status in
    SUCCEEDED) break ;;
    FAILED | STOPPED)
      say "job: $job"
      api GET "/api/jobs/$job_id/logs" | jq -r .logs >&2 || true
      fail "job $job_id is $job_status"
      ;;
  esac
  [ $SECONDS -lt $deadline ] || fail "job $job_id still $job_status after ${job_timeout}s: $job"
  sleep 0.2
done
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))

logs=$(api GET "/api/jobs/$job_id/logs" | jq -r .logs)
grep -qxF "smoke actor on node $CORTEX_TEST_RAY_NODE2_NODE_ID" <<<"$logs" || {
  printf '%s\n' "$logs" >&2
  fail "the job's log does not show the actor on the second node ($CORTEX_TEST_RAY_NODE2_NODE_ID)"
}
deleted=$(api DELETE "/api/jobs/$job_id" | jq -r .deleted)
[ "$deleted" = true ] || fail "DELETE /api/jobs/$job_id did not delete it"
say "job $job_id SUCCEEDED in ${elapsed_ms} ms, its actor ran on the second node; deleted"
say "OK"
