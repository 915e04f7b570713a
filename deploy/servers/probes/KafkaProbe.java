// Readiness probe for deploy/servers/kafka.sh: produces one record with an
// idempotent, acks=all producer and reads it back. Exits 0 only if the same
// record came back. Run as a single-file program on the broker's classpath.

import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaProbe {
    public static void main(String[] args) throws Exception {
        String brokers = args[0];
        String topic = "sluice.probe";
        String token = UUID.randomUUID().toString();

        Properties p = new Properties();
        p.put("bootstrap.servers", brokers);
        p.put("enable.idempotence", "true");
        p.put("acks", "all");
        p.put("delivery.timeout.ms", "15000");
        p.put("request.timeout.ms", "10000");
        p.put("max.block.ms", "10000");
        long offset;
        int partition;
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            var meta = producer.send(new ProducerRecord<>(topic, token, token)).get();
            offset = meta.offset();
            partition = meta.partition();
        }

        Properties c = new Properties();
        c.put("bootstrap.servers", brokers);
        c.put("enable.auto.commit", "false");
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, partition);
            consumer.assign(List.of(tp));
            consumer.seek(tp, offset);
            long deadline = System.currentTimeMillis() + 15000;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    if (token.equals(r.value())) {
                        System.out.println("kafka ready: produced and consumed offset " + offset);
                        return;
                    }
                }
            }
        }
        System.err.println("kafka probe: record produced but not consumed back");
        System.exit(1);
    }
}
