#!/usr/bin/env bash
# The Ray engine's cluster-side Python (src/engine/ray/python: the driver and its replica
# actor) against the real cluster .ci/ray/run.sh starts, with a fake cortex server:
#
#   bash .ci/ray/run.sh 'bash .ci/ray/test-driver.sh'
#
# Extra arguments go to unittest (e.g. tests.test_driver.DriverTest.test_3_exit_code_reported_not_restarted).
set -euo pipefail

: "${CORTEX_TEST_RAY_PYTHON:?run this through .ci/ray/run.sh}"
cd "$(dirname "${BASH_SOURCE[0]}")/../../src/engine/ray/python"
if [ $# -eq 0 ]; then set -- tests.test_driver; fi
exec "$CORTEX_TEST_RAY_PYTHON" -m unittest -v "$@"
