#!/usr/bin/env bash
# Start the core and both demo plugins on loopback; print the URL and the admin login.
#
#   scripts/run_demo.sh            (what `make run` calls)
#
# Environment: PORT (core, default 5000), PYTHON_PLUGIN_PORT (9101), NODE_PLUGIN_PORT (9102),
# EXTFW_INSTANCE_PATH (default ./instance), EXTFW_ADMIN_PASSWORD (the admin's password when this
# creates the admin; default a random one, printed once; an existing admin keeps its password).
# A demo plugin that exits is reported and the rest keep running; Ctrl-C, or the core
# exiting, stops everything it started.
set -euo pipefail
umask 077  # logs and token files in the instance folder are owner-only too

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PORT="${PORT:-5000}"
HOST=127.0.0.1
export EXTFW_INSTANCE_PATH="${EXTFW_INSTANCE_PATH:-$ROOT/instance}"
export EXTFW_BASE_URL="http://$HOST:$PORT"
export EXTFW_HEALTH_INTERVAL_S="${EXTFW_HEALTH_INTERVAL_S:-2}"
export PYTHONPATH="$ROOT/sdk${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$EXTFW_INSTANCE_PATH"
chmod 700 "$EXTFW_INSTANCE_PATH"

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Binds as gunicorn and Node do, with SO_REUSEADDR: a port whose last connections linger in
# TIME_WAIT for a minute after a stop is free for them, and only a listener makes it taken.
port_is_free() {
  "$VENV/bin/python" -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
wait_for() {  # url, pid, what: 0 once it answers, 1 if it exited or did not answer in 20 s
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "$3 exited; see $EXTFW_INSTANCE_PATH/logs/" >&2; return 1; }
    sleep 0.2
  done
  echo "$3 did not answer at $1" >&2
  return 1
}
plugin_up() {  # url, pid, what: a demo plugin that does not come up is left out, not fatal
  wait_for "$@" && return 0
  kill "$2" 2>/dev/null || true
  unset "NAMES[$2]"
  echo "the core keeps running without $3" >&2
}

PY_PORT="${PYTHON_PLUGIN_PORT:-9101}"
NODE_PORT="${NODE_PLUGIN_PORT:-9102}"
port_is_free "$PORT" || { echo "port $PORT is taken; set PORT=..." >&2; exit 1; }
port_is_free "$PY_PORT" || PY_PORT="$(free_port)"
port_is_free "$NODE_PORT" || NODE_PORT="$(free_port)"

flask() { "$VENV/bin/flask" --app app "$@"; }

flask init-db
ADMIN_EMAIL="${EXTFW_ADMIN_EMAIL:-admin@example.com}"
# The first admin's password: EXTFW_ADMIN_PASSWORD, or a random one printed once, on creation.
# An existing admin keeps its password (a start never resets a credential): the login printed
# names EXTFW_ADMIN_PASSWORD only when it opens the account.
BOOTSTRAP="$(flask users bootstrap-admin --email "$ADMIN_EMAIL")"
if grep -q "shown once" <<<"$BOOTSTRAP"; then
  LOGIN="$ADMIN_EMAIL / $(sed -n 's/.*shown once: //p' <<<"$BOOTSTRAP")   (shown once: note it)"
elif [[ -n "${EXTFW_ADMIN_PASSWORD:-}" ]]; then
  opens=0
  "$VENV/bin/python" -m scripts.admin_login "$ADMIN_EMAIL" || opens=$?
  case "$opens" in
    0) LOGIN="$ADMIN_EMAIL / $EXTFW_ADMIN_PASSWORD" ;;
    3) LOGIN="$ADMIN_EMAIL with the password it already has: EXTFW_ADMIN_PASSWORD does not open it
  (it is used only when the admin is created; to change the password:
  EXTFW_PASSWORD=... .venv/bin/flask --app app users set-password $ADMIN_EMAIL)" ;;
    *) echo "could not check the admin's password (scripts/admin_login.py)" >&2; exit 1 ;;
  esac
else
  LOGIN="$ADMIN_EMAIL with the password printed on its first start (or set EXTFW_ADMIN_PASSWORD before that)"
fi

# One enrolment key per start, usable twice (one per demo plugin); a plugin that already has
# its token file sends an update instead and does not spend it.
ENROLMENT_KEY="$(flask enrolment-keys create --uses 2 --expires 1h | tail -n 1)"

LOGS="$EXTFW_INSTANCE_PATH/logs"
mkdir -p "$LOGS"
PIDS=()
declare -A NAMES=()  # pid -> what it is, for the processes still running
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$VENV/bin/gunicorn" -w "${WORKERS:-2}" --threads 4 -b "$HOST:$PORT" app:app >"$LOGS/core.log" 2>&1 &
PIDS+=($!)
CORE_PID=$!
NAMES[$!]="the core"
wait_for "$EXTFW_BASE_URL/healthz" "${PIDS[-1]}" "the core" || exit 1

# Notebook under gunicorn (gthread: keep-alive; werkzeug's server closes every connection).
EXTFW_CORE_URL="$EXTFW_BASE_URL" EXTFW_ENROLMENT_KEY="$ENROLMENT_KEY" PORT="$PY_PORT" \
  PLUGIN_HOST="$HOST" PLUGIN_TOKEN_FILE="$EXTFW_INSTANCE_PATH/plugins/notebook.token" \
  "$VENV/bin/gunicorn" -c examples/python-plugin/gunicorn.conf.py -b "$HOST:$PY_PORT" \
  >"$LOGS/notebook.log" 2>&1 &
PIDS+=($!)
NAMES[$!]="Notebook (the Python demo plugin)"
plugin_up "http://$HOST:$PY_PORT/health" "${PIDS[-1]}" "the Python demo plugin"

EXTFW_CORE_URL="$EXTFW_BASE_URL" EXTFW_ENROLMENT_KEY="$ENROLMENT_KEY" PORT="$NODE_PORT" \
  PLUGIN_TOKEN_FILE="$EXTFW_INSTANCE_PATH/plugins/tasks.token" \
  node examples/node-plugin/server.mjs >"$LOGS/tasks.log" 2>&1 &
PIDS+=($!)
NAMES[$!]="Tasks (the Node demo plugin)"
plugin_up "http://$HOST:$NODE_PORT/health" "${PIDS[-1]}" "the Node demo plugin"

cat <<INFO

  extframework is running: $EXTFW_BASE_URL
  log in as $LOGIN
  demo plugins: Notebook (Python) on :$PY_PORT, Tasks (Node.js) on :$NODE_PORT
  they show in the menu once their first health check passes (a few seconds)
  logs: $LOGS/   stop: Ctrl-C

INFO
# A demo plugin that exits is one plugin down, as in production: the core's health checks
# mark it degraded in the console and the other plugin keeps working. The core exiting ends it all.
while true; do
  exited=""
  wait -n -p exited "${!NAMES[@]}" || true
  [[ -n "$exited" ]] || continue
  if [[ "$exited" == "$CORE_PID" ]]; then
    echo "the core exited; stopping the demo plugins (see $LOGS/core.log)" >&2
    exit 1
  fi
  echo "${NAMES[$exited]} exited; the core and the other plugin keep running (see $LOGS/)" >&2
  unset "NAMES[$exited]"
done
