// Readiness probe for deploy/servers/cassandra.sh: connects over the native
// protocol and runs a CQL query. Exits 0 only if the query answered.
// Uses the DataStax driver that ships with Cassandra itself.

import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;

public class CqlProbe {
    public static void main(String[] args) {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        try (Cluster cluster = Cluster.builder()
                .addContactPoint(host)
                .withPort(port)
                .withoutJMXReporting()
                .withoutMetrics()
                .build();
             Session session = cluster.connect()) {
            Row row = session.execute("SELECT release_version FROM system.local").one();
            System.out.println("cassandra ready: release_version " + row.getString(0));
        }
    }
}
