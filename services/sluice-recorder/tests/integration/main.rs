//! Recorder tests against real Kafka and a real Cassandra (standing in for
//! ScyllaDB). Every test uses its own keyspace, topic and consumer group, so
//! they run in parallel. Start the servers with `deploy/servers/kafka.sh
//! start` and `deploy/servers/cassandra.sh start`.

mod common;
mod conformance;
mod dedup;
mod embedded_node;
mod heartbeats;
mod keys;
mod ledger_cql;
mod ledger_embedded;
mod outage;
mod query_auth;
mod query_suppressions;
mod recording;
mod restart;
