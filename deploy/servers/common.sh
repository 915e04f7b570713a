# Shared helpers for deploy/servers/*.sh. Sourced, not run.
#
# Layout (all under SLUICE_SERVERS_HOME, default ~/.cache/sluice/servers):
#   <name>-lib/     runtime jars copied from Maven Central (kept between runs)
#   <name>-run/     data, logs, config and pid of the server we started
# A server is "ours" only if <name>-run/pid names a live process; stop never
# touches a server this script did not start.

set -euo pipefail

SERVERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SLUICE_SERVERS_HOME="${SLUICE_SERVERS_HOME:-$HOME/.cache/sluice/servers}"
mkdir -p "$SLUICE_SERVERS_HOME"

say() { printf '[%s] %s\n' "$SERVER_NAME" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

require_java17() {
  command -v java >/dev/null || die "java not found; install a Java 17 runtime (apt-get install openjdk-17-jre-headless)"
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${major%%.*}" -ge 17 ] 2>/dev/null || die "Java 17 or newer is needed, found '$major'"
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# fetch_jars POM_DIR LIB_DIR: copy the runtime jars of POM_DIR's pom into LIB_DIR
# once; later runs reuse them (and the Maven repository in ~/.m2).
fetch_jars() {
  local pom_dir="$1" lib_dir="$2"
  if [ -f "$lib_dir/.complete" ] && [ "$lib_dir/.complete" -nt "$pom_dir/pom.xml" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found; install Maven (apt-get install maven)"
  say "fetching jars from Maven Central into $lib_dir"
  rm -rf "$lib_dir"
  local log
  log="$(mktemp)"
  if ! mvn -q -B -f "$pom_dir/pom.xml" package -Dlib.dir="$lib_dir" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    die "Maven could not fetch the jars (log above)"
  fi
  rm -rf "$pom_dir/target" "$log"
  touch "$lib_dir/.complete"
}

# our_pid RUN_DIR: prints the pid we recorded if that process still runs.
our_pid() {
  local pidfile="$1/pid"
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# stop_ours RUN_DIR: stops the process we started (TERM, then KILL after 30 s).
stop_ours() {
  local run_dir="$1" pid
  if ! pid="$(our_pid "$run_dir")"; then
    say "not running (or not started by this script); nothing to stop"
    rm -f "$run_dir/pid"
    return 0
  fi
  say "stopping pid $pid"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$run_dir/pid"; say "stopped"; return 0; }
    sleep 0.5
  done
  say "pid $pid ignored SIGTERM for 30 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$run_dir/pid"
}

# wait_ready SECONDS LOG CHECK...: runs CHECK until it succeeds; on timeout or
# when the server died, prints the log tail and fails.
wait_ready() {
  local seconds="$1" log="$2" pidfile="$3"
  shift 3
  local deadline=$((SECONDS + seconds))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      say "the server exited during start-up; last lines of $log:"
      tail -n 60 "$log" >&2 || true
      rm -f "$pidfile"
      exit 1
    fi
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 2
  done
  say "not ready after ${seconds}s; last lines of $log:"
  tail -n 60 "$log" >&2 || true
  exit 1
}

# already_up RUN_DIR PORT: true (and says why) when our server or another
# process already serves PORT.
already_up() {
  local pid
  if pid="$(our_pid "$1")"; then
    say "already running (pid $pid, started by this script)"
    return 0
  fi
  if port_open 127.0.0.1 "$2"; then
    say "something already listens on 127.0.0.1:$2; using it as is (this script will not stop it)"
    return 0
  fi
  return 1
}

# prepare_run POM_DIR LIB_DIR RUN_DIR: Java check, jars, and a fresh run directory.
prepare_run() {
  require_java17
  fetch_jars "$1" "$2"
  rm -rf "$3"
  mkdir -p "$3/data" "$3/logs"
}

# status PORT: exit 0 when something listens on PORT.
status() {
  if port_open 127.0.0.1 "$1"; then
    say "listening on 127.0.0.1:$1"
  else
    say "not listening on 127.0.0.1:$1"
    exit 1
  fi
}
