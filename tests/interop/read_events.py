"""Reads a tidewater topic the way a consumer that no one here wrote would:
confluent-kafka (librdkafka) for Kafka, fastavro for Avro. Schemas come from
the `_tidewater_schemas` topic, keyed by the fingerprint that follows the
single-object header (0xC3 0x01). Prints one JSON line per message with
logical values turned into plain numbers and strings, so the caller can
compare them exactly:

  timestamp-micros / local-timestamp-micros -> microseconds since the epoch
  date -> days since 1970-01-01; time-micros -> microseconds since midnight
  decimal -> its text at the declared scale; uuid -> text; bytes -> hex
  non-finite floats -> "NaN" / "Infinity" / "-Infinity"

Usage: read_events.py BROKERS TOPIC
"""

import io
import json
import sys

import fastavro
from confluent_kafka import Consumer, TopicPartition

from plain import plain

def read_all(brokers, topic):
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "tidewater-interop",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
    })
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions.keys()
    assignments, highs = [], {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            assignments.append(TopicPartition(topic, p, low))
            highs[p] = high
    messages = []
    if assignments:
        consumer.assign(assignments)
    while highs:
        m = consumer.poll(5.0)
        if m is None:
            raise SystemExit(f"timed out reading {topic}; still waiting for {highs}")
        if m.error():
            raise SystemExit(f"kafka error: {m.error()}")
        messages.append(m)
        if m.offset() + 1 >= highs.get(m.partition(), 0):
            highs.pop(m.partition(), None)
    consumer.close()
    return messages


def main():
    brokers, topic = sys.argv[1], sys.argv[2]
    schemas = {}
    for m in read_all(brokers, "_tidewater_schemas"):
        entry = json.loads(m.value())
        schemas[m.key().decode()] = fastavro.parse_schema(json.loads(entry["schema"]))

    def decode(data):
        if data is None:
            return None
        if data[:2] != b"\xc3\x01":
            raise SystemExit(f"not single-object encoded: {data[:2]!r}")
        schema = schemas[data[2:10].hex()]
        return fastavro.schemaless_reader(io.BytesIO(data[10:]), schema, None)

    for m in read_all(brokers, topic):
        print(json.dumps({
            "partition": m.partition(),
            "offset": m.offset(),
            "key": plain(decode(m.key())),
            "value": plain(decode(m.value())),
        }))


if __name__ == "__main__":
    main()
