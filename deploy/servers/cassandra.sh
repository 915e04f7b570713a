#!/usr/bin/env bash
# Starts, checks and stops a single-node Apache Cassandra 5.0 on loopback, from
# its Maven Central artifacts. It stands in for ScyllaDB in Sluice's tests:
# Sluice uses only CQL that both accept.
#
#   deploy/servers/cassandra.sh start    fetch jars if needed, start, wait until a CQL
#                                        query answers
#   deploy/servers/cassandra.sh stop     stop the node this script started (only that one)
#   deploy/servers/cassandra.sh restart  stop it (drained, SIGTERM) and start it on the same data
#   deploy/servers/cassandra.sh status   say whether a node answers on the port
#
# Settings (environment):
#   SLUICE_CASSANDRA_PORT        CQL native port (default 9042); storage uses port+1
#   SLUICE_CASSANDRA_HEAP        JVM heap (default 2g)
#   SLUICE_SERVERS_HOME          where jars and run data live (~/.cache/sluice/servers)
#   SLUICE_SERVER_START_TIMEOUT  seconds to wait for readiness (default 180)

SERVER_NAME=cassandra
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT="${SLUICE_CASSANDRA_PORT:-9042}"
STORAGE_PORT=$((PORT + 1))
HEAP="${SLUICE_CASSANDRA_HEAP:-2g}"
LIB="$SLUICE_SERVERS_HOME/cassandra-lib"
RUN="$SLUICE_SERVERS_HOME/cassandra-run-$PORT"

probe() {
  java -cp "$LIB/*" "$SERVERS_DIR/probes/CqlProbe.java" 127.0.0.1 "$PORT"
}

write_config() {
  cat >"$RUN/cassandra.yaml" <<CONF
cluster_name: sluice-local
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $STORAGE_PORT
native_transport_port: $PORT
start_native_transport: true
data_file_directories: [$RUN/data]
commitlog_directory: $RUN/commitlog
saved_caches_directory: $RUN/saved_caches
hints_directory: $RUN/hints
cdc_raw_directory: $RUN/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 8
memtable_heap_space: 256MiB
memtable_offheap_space: 256MiB
auto_snapshot: false
storage_compatibility_mode: NONE
CONF
}

# start [keep]: a fresh node, or with "keep" the same data directory again.
start() {
  already_up "$RUN" "$PORT" && return 0
  if [ "${1:-}" = keep ] && [ -d "$RUN/data" ]; then
    require_java17
  else
    prepare_run "$SERVERS_DIR/cassandra" "$LIB" "$RUN"
  fi
  write_config
  local jamm
  jamm="$(ls "$LIB"/jamm-*.jar | head -n 1)"
  say "starting on 127.0.0.1:$PORT (data in $RUN)"
  nohup java -Xms"$HEAP" -Xmx"$HEAP" @"$SERVERS_DIR/cassandra/jvm17.options" \
    -javaagent:"$jamm" \
    -Dcassandra.config="file://$RUN/cassandra.yaml" \
    -Dcassandra.logdir="$RUN/logs" \
    -Dcassandra.storagedir="$RUN" \
    -Dlogback.configurationFile="$SERVERS_DIR/cassandra/logback.xml" \
    -Dcassandra-foreground=yes \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.ring_delay_ms=1000 \
    -Dcassandra.superuser_setup_delay_ms=0 \
    -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon \
    >"$RUN/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$RUN/pid"
  wait_ready "${SLUICE_SERVER_START_TIMEOUT:-180}" "$RUN/logs/system.log" "$RUN/pid" probe
  say "ready: CQL query on 127.0.0.1:$PORT answered"
}

case "${1:-}" in
  start) start ;;
  stop) stop_ours "$RUN" ;;
  restart) stop_ours "$RUN"; start keep ;;
  status) status "$PORT" ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
