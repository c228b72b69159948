#!/usr/bin/python3
"""Create or list Kafka ACLs with kafka-python's admin client, as JSON.

Used by the end-to-end tests (e2e/acls_test.go); run it by hand too:

    /usr/bin/python3 e2e/clients/kafka_python_acls.py --bootstrap 127.0.0.1:9092 \
        --sasl-mechanism SCRAM-SHA-256 --sasl-user admin --sasl-password secret \
        create --principal User:alice --topic orders --operation READ

kafka-python sends ACL requests to the least loaded broker, which may be a
follower: Tandem's followers hand them to the leader.
Output of "create": {"succeeded": N, "failed": ["error", ...]}.
Output of "list": {"error": "NoError", "acls": [[resource_type, name,
pattern_type, principal, host, operation, permission], ...]} for every ACL
on topics.
"""

import argparse
import json
import sys

import security_args
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                         ACLResourcePatternType, KafkaAdminClient,
                         ResourcePattern, ResourcePatternFilter, ResourceType)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT of a broker")
    security_args.add_arguments(ap)
    sub = ap.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="allow a principal an operation on a topic")
    create.add_argument("--principal", required=True)
    create.add_argument("--topic", required=True)
    create.add_argument("--operation", required=True, help="READ, WRITE, DESCRIBE, ALL, ...")
    sub.add_parser("list", help="list the ACLs on topics")
    args = ap.parse_args()

    admin = KafkaAdminClient(bootstrap_servers=[args.bootstrap], client_id="e2e-kafka-python-acls",
                             request_timeout_ms=30000, **security_args.client_options(args))
    try:
        if args.action == "create":
            acl = ACL(principal=args.principal, host="*", operation=ACLOperation[args.operation],
                      permission_type=ACLPermissionType.ALLOW,
                      resource_pattern=ResourcePattern(ResourceType.TOPIC, args.topic,
                                                       ACLResourcePatternType.LITERAL))
            res = admin.create_acls([acl])
            out = {"succeeded": len(res["succeeded"]),
                   "failed": [str(err) for _, err in res["failed"]]}
        else:
            flt = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                            permission_type=ACLPermissionType.ANY,
                            resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, None,
                                                                   ACLResourcePatternType.ANY))
            acls, err = admin.describe_acls(flt)
            out = {"error": err.__name__ if isinstance(err, type) else type(err).__name__,
                   "acls": sorted([a.resource_pattern.resource_type.name, a.resource_pattern.resource_name,
                                   a.resource_pattern.pattern_type.name, a.principal, a.host,
                                   a.operation.name, a.permission_type.name] for a in acls)}
    finally:
        admin.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
