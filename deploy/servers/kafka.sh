#!/usr/bin/env bash
# Starts, checks and stops a single-node Apache Kafka 4.x (KRaft) on loopback,
# from its Maven Central artifacts, for Sluice's tests and local development.
#
#   deploy/servers/kafka.sh start    fetch jars if needed, format, start, wait until a
#                                    record can be produced and consumed
#   deploy/servers/kafka.sh stop     stop the broker this script started (only that one)
#   deploy/servers/kafka.sh status   say whether a broker answers on the port
#
# Settings (environment):
#   SLUICE_KAFKA_PORT            client port (default 9092); controller uses port+1
#   SLUICE_KAFKA_HEAP            JVM heap (default 1g)
#   SLUICE_SERVERS_HOME          where jars and run data live (~/.cache/sluice/servers)
#   SLUICE_SERVER_START_TIMEOUT  seconds to wait for readiness (default 180)

SERVER_NAME=kafka
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT="${SLUICE_KAFKA_PORT:-9092}"
CONTROLLER_PORT=$((PORT + 1))
HEAP="${SLUICE_KAFKA_HEAP:-1g}"
LIB="$SLUICE_SERVERS_HOME/kafka-lib"
RUN="$SLUICE_SERVERS_HOME/kafka-run-$PORT"

probe() {
  java -cp "$LIB/*" "$SERVERS_DIR/probes/KafkaProbe.java" "127.0.0.1:$PORT"
}

write_config() {
  cat >"$RUN/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=33554432
replica.fetch.max.bytes=33554432
log.retention.hours=24
CONF
}

start() {
  already_up "$RUN" "$PORT" && return 0
  prepare_run "$SERVERS_DIR/kafka" "$LIB" "$RUN"
  write_config
  local cluster_id
  cluster_id="$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid)"
  java -cp "$LIB/*" -Dlog4j2.configurationFile="$SERVERS_DIR/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$RUN/logs" \
    kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$RUN/server.properties" \
    >"$RUN/logs/format.log" 2>&1 || { cat "$RUN/logs/format.log" >&2; die "formatting KRaft storage failed"; }
  say "starting on 127.0.0.1:$PORT (data in $RUN)"
  nohup java -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SERVERS_DIR/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$RUN/logs" \
    -cp "$LIB/*" kafka.Kafka "$RUN/server.properties" \
    >"$RUN/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$RUN/pid"
  wait_ready "${SLUICE_SERVER_START_TIMEOUT:-180}" "$RUN/logs/server.log" "$RUN/pid" probe
  say "ready: produce/consume round trip on 127.0.0.1:$PORT succeeded"
}

case "${1:-}" in
  start) start ;;
  stop) stop_ours "$RUN" ;;
  status) status "$PORT" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
