#!/usr/bin/python3
"""Run Kafka transactions with librdkafka (confluent-kafka-python), as JSON.

Used by the end-to-end tests (e2e/transactions_test.go); run it by hand too:

    /usr/bin/python3 e2e/clients/librdkafka_transactions.py \
        --bootstrap 127.0.0.1:9092 --topic demo --id app-1 --plan cac

produce: for each letter of --plan, one transaction of --per-txn messages
("c": committed, "a": aborted) with values "<id>-t<i>-<n>", keyed by n so
that they spread over the partitions; then, with --group G and --input T,
it also sends the consumer offsets of G for T (send_offsets_to_transaction,
offset = number of the transaction + 1 on partition 0) inside each
transaction. Prints {"committed": [...], "aborted": [...]}, the values of
each kind.

offsets (--offsets): print {"offset": N}, the committed offset of --group
on --topic partition 0 (-1 for none).

consume (--consume): read --topic from the start with
isolation.level=read_committed (or --uncommitted) until --count messages
or --timeout seconds; prints {"values": [...], "timed_out": bool}.

Needs python3-confluent-kafka (librdkafka).
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(args):
    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "transactional.id": args.id,
        "transaction.timeout.ms": 60000,
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    p.init_transactions(30)
    out = {"committed": [], "aborted": []}
    for i, kind in enumerate(args.plan):
        p.begin_transaction()
        values = []
        for n in range(args.per_txn):
            v = "%s-t%d-%d" % (args.id, i, n)
            p.produce(args.topic, key=str(n).encode(), value=v.encode())
            values.append(v)
        if args.group:
            meta = GroupMetadata(args.group)
            p.send_offsets_to_transaction([TopicPartition(args.input, 0, i + 1)], meta, 30)
        # librdkafka drops messages not yet sent when a transaction is
        # aborted: flush first, so that the aborted ones reach the broker
        # (and read_uncommitted consumers see them).
        p.flush(30)
        if kind == "c":
            p.commit_transaction(30)
            out["committed"].extend(values)
        else:
            p.abort_transaction(30)
            out["aborted"].extend(values)
    p.flush(30)
    json.dump(out, sys.stdout)


class GroupMetadata:
    """What send_offsets_to_transaction needs: the consumer group's metadata.

    confluent-kafka 1.7 takes a consumer's group metadata object; a consumer
    that joined no group gives a generation of -1, which is what an
    application committing for a group it does not belong to sends."""

    def __new__(cls, group):
        c = Consumer({"bootstrap.servers": ARGS.bootstrap, "group.id": group})
        meta = c.consumer_group_metadata()
        c.close()
        return meta


def consume(args):
    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "librdkafka-txn-reader-%d" % time.time_ns(),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_uncommitted" if args.uncommitted else "read_committed",
    })
    c.subscribe([args.topic])
    values = []
    deadline = time.time() + args.timeout
    while len(values) < args.count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            continue  # partition EOF and the like
        values.append(m.value().decode())
    c.close()
    json.dump({"values": values, "timed_out": len(values) < args.count}, sys.stdout)


ARGS = None


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of a broker")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--id", default="librdkafka-app", help="transactional id")
    ap.add_argument("--plan", default="ca", help="c (commit) and a (abort), one letter per transaction")
    ap.add_argument("--per-txn", type=int, default=5)
    ap.add_argument("--group", default=None, help="also commit this group's offsets in each transaction")
    ap.add_argument("--input", default=None, help="the topic whose offsets --group commits")
    ap.add_argument("--consume", action="store_true")
    ap.add_argument("--uncommitted", action="store_true")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--offsets", action="store_true")
    ARGS = ap.parse_args()
    if ARGS.offsets:
        c = Consumer({"bootstrap.servers": ARGS.bootstrap, "group.id": ARGS.group})
        tp = c.committed([TopicPartition(ARGS.topic, 0)], timeout=30)[0]
        c.close()
        json.dump({"offset": tp.offset if tp.offset >= 0 else -1}, sys.stdout)
    elif ARGS.consume:
        consume(ARGS)
    else:
        produce(ARGS)


if __name__ == "__main__":
    main()
