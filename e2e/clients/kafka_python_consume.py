#!/usr/bin/python3
"""Consume messages with kafka-python and print them, as JSON.

Used by the end-to-end tests (e2e/kafka_python_test.go); run it by hand too:

    /usr/bin/python3 e2e/clients/kafka_python_consume.py \
        --bootstrap 127.0.0.1:9092 --topic demo --count 10 [--group G]

Without --group the consumer has no group_id: it assigns itself every
partition of the topic and seeks to the beginning. With --group it subscribes
as a member of group G (starting from the earliest offset when the group has
no committed offset), and after reading --count messages commits, for each
partition, the offset after the last message it returned, then leaves.

It stops after --count messages or --timeout seconds, whichever comes first.
Output: {"count": N, "records": [[partition, offset, value], ...],
         "committed": {"partition": offset, ...}, "timed_out": bool}
"""

import argparse
import json
import sys
import time

import security_args
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of a broker")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True, help="messages to read")
    ap.add_argument("--group", default=None, help="consumer group id (default: none)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds")
    security_args.add_arguments(ap)
    args = ap.parse_args()
    security = security_args.client_options(args)

    deadline = time.time() + args.timeout
    consumer = KafkaConsumer(
        bootstrap_servers=[args.bootstrap],
        client_id="e2e-kafka-python-consumer",
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=20000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        fetch_max_wait_ms=200,
        **security,
    )
    if args.group is None:
        parts = None
        while parts is None and time.time() < deadline:
            parts = consumer.partitions_for_topic(args.topic)
            if parts is None:
                time.sleep(0.1)
        if parts is None:
            raise SystemExit("topic %s has no partitions in the metadata" % args.topic)
        tps = [TopicPartition(args.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
    else:
        consumer.subscribe([args.topic])

    records = []
    last = {}
    while len(records) < args.count and time.time() < deadline:
        polled = consumer.poll(timeout_ms=200, max_records=args.count - len(records))
        for tp, msgs in polled.items():
            for m in msgs:
                records.append([tp.partition, m.offset, m.value.decode()])
                last[tp] = m.offset
    # Records of different partitions arrive interleaved; order them for
    # stable output (per-partition order is kept).
    records.sort(key=lambda r: (r[0], r[1]))

    committed = {}
    if args.group is not None and last:
        offsets = {tp: OffsetAndMetadata(off + 1, None) for tp, off in last.items()}
        consumer.commit(offsets)
        committed = {str(tp.partition): om.offset for tp, om in offsets.items()}
    consumer.close(autocommit=False)
    json.dump(
        {
            "count": len(records),
            "records": records,
            "committed": committed,
            "timed_out": len(records) < args.count,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
