#!/usr/bin/env bash
# A three-broker Apache Kafka 4.x cluster (KRaft, every node broker and
# controller) on loopback, from the same Maven Central jars as kafka.sh, for
# the tests that lose a broker.
#
#   deploy/servers/kafka-cluster.sh start        format and start the three nodes, wait until
#                                                a record makes an acks=all round trip
#   deploy/servers/kafka-cluster.sh stop         stop the nodes this script started
#   deploy/servers/kafka-cluster.sh kill N       kill -9 node N (1-3), as a crash would
#   deploy/servers/kafka-cluster.sh restart N    start node N again on its data
#   deploy/servers/kafka-cluster.sh status       say whether node 1 answers
#   deploy/servers/kafka-cluster.sh brokers      print the bootstrap list
#
# Settings (environment):
#   SLUICE_KAFKA_CLUSTER_PORT    client port of node 1 (default 19092); node N listens on
#                                port+2(N-1) and its controller on the port after that
#   SLUICE_KAFKA_CLUSTER_HEAP    JVM heap per node (default 512m)
#   SLUICE_SERVERS_HOME          where jars and run data live (~/.cache/sluice/servers)
#   SLUICE_SERVER_START_TIMEOUT  seconds to wait for readiness (default 180)

SERVER_NAME=kafka-cluster
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BASE="${SLUICE_KAFKA_CLUSTER_PORT:-19092}"
HEAP="${SLUICE_KAFKA_CLUSTER_HEAP:-512m}"
LIB="$SLUICE_SERVERS_HOME/kafka-lib"
RUN="$SLUICE_SERVERS_HOME/kafka-cluster-run-$BASE"
NODES=(1 2 3)

port() { echo $((BASE + 2 * ($1 - 1))); }
controller_port() { echo $(($(port "$1") + 1)); }
node_dir() { echo "$RUN/node$1"; }

brokers() {
  local list=() n
  for n in "${NODES[@]}"; do list+=("127.0.0.1:$(port "$n")"); done
  (IFS=,; echo "${list[*]}")
}

voters() {
  local list=() n
  for n in "${NODES[@]}"; do list+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${list[*]}")
}

probe() {
  java -cp "$LIB/*" "$SERVERS_DIR/probes/KafkaProbe.java" "$(brokers)"
}

write_config() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<CONF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
message.max.bytes=33554432
replica.fetch.max.bytes=33554432
replica.lag.time.max.ms=10000
log.retention.hours=24
CONF
}

launch() {
  local n="$1" dir
  dir="$(node_dir "$n")"
  nohup java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SERVERS_DIR/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$dir/logs" \
    -cp "$LIB/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

start() {
  already_up "$(node_dir 1)" "$(port 1)" && return 0
  prepare_run "$SERVERS_DIR/kafka" "$LIB" "$RUN"
  local cluster_id n
  cluster_id="$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid)"
  for n in "${NODES[@]}"; do
    write_config "$n"
    java -cp "$LIB/*" -Dlog4j2.configurationFile="$SERVERS_DIR/kafka/log4j2.properties" \
      -Dkafka.logs.dir="$(node_dir "$n")/logs" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$(node_dir "$n")/server.properties" \
      >"$(node_dir "$n")/logs/format.log" 2>&1 \
      || { cat "$(node_dir "$n")/logs/format.log" >&2; die "formatting node $n failed"; }
  done
  say "starting three nodes on $(brokers) (data in $RUN)"
  for n in "${NODES[@]}"; do launch "$n"; done
  wait_ready "${SLUICE_SERVER_START_TIMEOUT:-180}" "$(node_dir 1)/logs/server.log" "$(node_dir 1)/pid" probe
  say "ready: acks=all round trip on $(brokers) succeeded"
}

node_arg() {
  case "${1:-}" in
    1|2|3) echo "$1" ;;
    *) echo "usage: $0 kill|restart 1|2|3" >&2; exit 2 ;;
  esac
}

kill_node() {
  local n pid
  n="$(node_arg "$1")"
  pid="$(our_pid "$(node_dir "$n")")" || die "node $n is not running (or not started by this script)"
  kill -9 "$pid"
  say "node $n (pid $pid) killed with -9"
}

restart_node() {
  local n
  n="$(node_arg "$1")"
  if our_pid "$(node_dir "$n")" >/dev/null; then
    say "node $n already runs"
    return 0
  fi
  launch "$n"
  say "node $n started again on its data"
}

stop_all() {
  # Together: stopped one by one, the last node waits for a quorum that is
  # already gone and needs the 30 s SIGKILL fallback.
  local n
  for n in "${NODES[@]}"; do stop_ours "$(node_dir "$n")" & done
  wait
}

case "${1:-}" in
  start) start ;;
  stop) stop_all ;;
  kill) kill_node "${2:-}" ;;
  restart) restart_node "${2:-}" ;;
  status) status "$(port 1)" ;;
  brokers) brokers ;;
  *) echo "usage: $0 start|stop|kill N|restart N|status|brokers" >&2; exit 2 ;;
esac
