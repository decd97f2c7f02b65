#!/usr/bin/env bash
# Installs what the Ray tests need: a cached virtualenv with Ray, and the programs that run a
# Ray cluster inside a loopback-only network namespace (unshare, ip, ss, curl, jq).
#
#   bash .ci/ray/install.sh
#
# The virtualenv is ${CORTEX_RAY_VENV:-$HOME/.cache/cortex-ci/ray-venv}; it is reused when it
# already holds this exact Ray version and imports, and made again otherwise. Any failure
# exits non-zero: the Ray step is never skipped silently.
set -euo pipefail

# The one Ray version the tests run against (PyPI's newest when this was written).
RAY_VERSION=2.60.0

venv=${CORTEX_RAY_VENV:-$HOME/.cache/cortex-ci/ray-venv}
case $venv in /*) ;; *) venv=$PWD/$venv ;; esac
marker=$venv/.cortex-ray-venv

say() { printf 'ray install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- programs --------------------------------------------------------------------------
# Debian package for each program the scripts run.
need=()
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v timeout >/dev/null 2>&1 || need+=(coreutils)

# The interpreter the virtualenv is made from: the system's, which does not move when pyenv's
# global version changes, unless CORTEX_RAY_PYTHON names another.
python=${CORTEX_RAY_PYTHON:-}
if [ -z "$python" ]; then
  if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
if ! command -v "$python" >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

if [ ${#need[@]} -gt 0 ]; then
  # Deduplicate (iproute2 may be listed twice).
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${need[*]} (install them, or run as root)"
  say "apt-get install ${need[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
command -v "$python" >/dev/null 2>&1 || die "no $python after installing python3"
"$python" -c 'import venv, ensurepip' || die "$python has no venv/ensurepip"

# --- the virtualenv ----------------------------------------------------------------------
check_venv() {
  [ -f "$marker" ] || return 1
  "$venv/bin/python" - "$RAY_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import ray
assert ray.__version__ == sys.argv[1], ray.__version__
# ray[default] (the dashboard and its agents) is what serves the Jobs and State HTTP APIs.
import aiohttp, ray.dashboard.modules.job.job_head  # noqa: F401
EOF
  [ -x "$venv/bin/ray" ]
}

if check_venv; then
  say "reusing $venv (ray $RAY_VERSION)"
  exit 0
fi

if [ -e "$venv" ]; then
  # Only ever remove a directory this script made (or an empty one).
  if [ -f "$marker" ] || [ -f "$venv/.cortex-ray-venv.partial" ] || [ -z "$(ls -A "$venv")" ]; then
    say "removing the stale virtualenv $venv"
    rm -rf -- "$venv"
  else
    die "$venv exists and was not made by this script; remove it or set CORTEX_RAY_VENV"
  fi
fi

start=$SECONDS
say "creating $venv with ray[default]==$RAY_VERSION ($("$python" --version 2>&1))"
mkdir -p "$venv"
touch "$venv/.cortex-ray-venv.partial"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
  "ray[default]==$RAY_VERSION" ||
  die "pip install ray[default]==$RAY_VERSION failed (see above)"
printf '%s\n' "$RAY_VERSION" >"$marker"
rm -f "$venv/.cortex-ray-venv.partial"
check_venv || die "the new virtualenv $venv does not import ray $RAY_VERSION with its dashboard"
say "installed ray $RAY_VERSION in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
