#!/usr/bin/env bash
# The integration tests that run on both engines, run on the Ray engine, and the Ray engine's
# own tests (node loss, driver loss, placement), against the cluster .ci/ray/run.sh starts:
#
#   cargo test --no-run && bash .ci/ray/run.sh 'bash .ci/ray/engine-tests.sh'
#   bash .ci/ray/run.sh 'bash .ci/ray/engine-tests.sh --node-loss'   (kills the second node:
#                                                                     a cluster of its own)
#
# Build first: the namespace has no network. Other arguments replace the test filters.
set -euo pipefail

: "${CORTEX_TEST_RAY_ADDRESS:?run this through .ci/ray/run.sh}"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CORTEX_TEST_ENGINE=ray
# The engine-neutral tests: what users see must not change with the engine.
shared=(
  realtime::python_example_deploys_and_answers_predictions
  realtime::command_example_deploys_and_answers_predictions
  realtime::redeploying_is_up_to_date_and_a_changed_config_updates
  realtime::an_exception_in_init_makes_the_api_error_with_its_message
  realtime::an_exception_in_predict_is_a_500_with_the_traceback_in_the_logs
  realtime::a_replica_killed_with_sigkill_is_restarted_and_serves_again
  realtime::predictor_env_and_dotenv_reach_the_replica
  realtime::several_processes_per_replica_serve_one_api
  realtime::the_old_replica_serves_during_an_update_and_force_overrides_it
  realtime::going_back_to_the_serving_spec_during_an_update_reuses_its_replica
  realtime::form_bodies_headers_and_bytes_reach_the_predictor_through_the_gateway
  realtime::a_slow_upload_during_an_update_reaches_the_new_replica
  scaling::
  batch::
  lifecycle::apis_come_back_live_after_a_server_restart
  lifecycle::delete_stops_the_replica_frees_its_port_and_forgets_the_api
  lifecycle::delete_returns_once_a_replica_slow_to_stop_has_stopped
  lifecycle::logs_print_the_replica_output_and_follow_new_lines
  lifecycle::logs_follow_says_when_its_api_is_deleted
  lifecycle::a_replica_that_never_answers_healthz_says_so
  unresponsive::
  worker_restarts::
)
if [ "${1:-}" = --node-loss ]; then
  exec cargo test --offline --test it -- --ignored --nocapture --exact \
    ray_engine::node_loss_losing_the_second_node_moves_its_replicas_to_the_head_and_the_api_keeps_answering
fi
# What holds on the local engine only: on Ray, memory is sampled (a spike between two samples
# passes; ray_engine:: has its own memory test).
local_only=(--skip batch::a_worker_killed_for_memory_ends_the_job_with_worker_oom)
if [ $# -gt 0 ]; then shared=("$@"); fi
# Two at a time: the cluster has 1 CPU per node.
cargo test --offline --test it -- --test-threads=2 "${shared[@]}" "${local_only[@]}"
if [ $# -eq 0 ]; then
  cargo test --offline --test it -- --test-threads=1 --ignored ray_engine:: --skip ray_engine::node_loss
fi
