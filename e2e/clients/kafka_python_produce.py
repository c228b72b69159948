#!/usr/bin/python3
"""Produce messages with kafka-python and print where they landed, as JSON.

Used by the end-to-end tests (e2e/kafka_python_test.go); run it by hand too:

    /usr/bin/python3 e2e/clients/kafka_python_produce.py \
        --bootstrap 127.0.0.1:9092 --topic demo --count 10 --acks all

Message i has the value PREFIX + str(i) (no key), padded with "." to
--value-bytes when that is larger. Each send is waited for,
so a broker error fails the script with a traceback and a non-zero exit.
Output: {"sent": N, "records": [[partition, offset, value], ...]}
"""

import argparse
import json
import sys

import security_args
from kafka import KafkaProducer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of a broker")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--acks", default="1", help="0, 1 or all")
    ap.add_argument("--prefix", default="m-", help="value prefix")
    ap.add_argument("--compression", default=None, help="gzip, snappy, lz4 (default none)")
    ap.add_argument("--value-bytes", type=int, default=0, help="pad each value with '.' to this size")
    ap.add_argument("--client-id", default="e2e-kafka-python-producer")
    security_args.add_arguments(ap)
    args = ap.parse_args()
    security = security_args.client_options(args)

    acks = args.acks if args.acks == "all" else int(args.acks)
    producer = KafkaProducer(
        bootstrap_servers=[args.bootstrap],
        client_id=args.client_id,
        acks=acks,
        retries=3,
        linger_ms=5,
        compression_type=args.compression,
        request_timeout_ms=15000,
        max_block_ms=20000,
        **security,
    )
    futures = []
    for i in range(args.count):
        value = "%s%d" % (args.prefix, i)
        padded = value.ljust(args.value_bytes, ".")
        futures.append((value, producer.send(args.topic, value=padded.encode())))
    producer.flush(timeout=30)
    records = []
    for value, fut in futures:
        md = fut.get(timeout=30)
        records.append([md.partition, md.offset, value])
    producer.close(timeout=10)
    json.dump({"sent": len(records), "records": records}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
