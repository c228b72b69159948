#!/usr/bin/python3
"""Ask a Tandem sidecar for its admin status and health, from Python.

Proof that the protos work outside Go: this uses only the stubs that
`go tool buf generate` writes to gen/python and Debian's python3-grpcio and
python3-protobuf. Used by e2e/python_admin_test.go; run it by hand too:

    PYTHONPATH=gen/python /usr/bin/python3 e2e/clients/admin_status.py \
        --sidecar 127.0.0.1:9192

With mutual TLS on the sidecar (docs/security.md), add
--tls-ca ca.crt --tls-cert admin.crt --tls-key admin.key.

Output, one JSON object:
    {"status": <tandem.admin.v1.StatusResponse as JSON>,
     "health": {"": "SERVING", "tandem.Readiness": "SERVING"}}
A gRPC error exits non-zero with the status code and message on stderr.
"""

import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from tandem.admin.v1 import admin_pb2, admin_pb2_grpc

READINESS = "tandem.Readiness"


def health_messages():
    """grpc.health.v1's two messages, built at run time.

    Debian ships no grpcio-health-checking module, and the health proto is
    not part of Tandem's buf module, so the descriptor is declared here
    (https://github.com/grpc/grpc/blob/master/doc/health-checking.md).
    """
    fd = descriptor_pb2.FileDescriptorProto(name="grpc/health/v1/health.proto", package="grpc.health.v1", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    req = fd.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    resp = fd.message_type.add(name="HealthCheckResponse")
    enum = resp.enum_type.add(name="ServingStatus")
    for i, n in enumerate(["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]):
        enum.value.add(name=n, number=i)
    resp.field.add(name="status", number=1, type=F.TYPE_ENUM, label=F.LABEL_OPTIONAL,
                   type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    get = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get is None:
        get = message_factory.MessageFactory(pool).GetPrototype  # protobuf 3.20/4.21 (Debian 12)
    return (get(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
            get(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")))


def channel(args):
    if not args.tls_ca:
        return grpc.insecure_channel(args.sidecar)
    with open(args.tls_ca, "rb") as f:
        ca = f.read()
    key = cert = None
    if args.tls_cert:
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        with open(args.tls_key, "rb") as f:
            key = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    opts = []
    if args.tls_server_name:
        opts.append(("grpc.ssl_target_name_override", args.tls_server_name))
    return grpc.secure_channel(args.sidecar, creds, options=opts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sidecar", required=True, help="HOST:PORT of a sidecar's --listen")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    ap.add_argument("--tls-ca", help="CA certificate (enables TLS)")
    ap.add_argument("--tls-cert", help="client certificate")
    ap.add_argument("--tls-key", help="client key")
    ap.add_argument("--tls-server-name", help="name expected in the sidecar's certificate")
    args = ap.parse_args()

    with channel(args) as ch:
        try:
            st = admin_pb2_grpc.AdminServiceStub(ch).Status(admin_pb2.StatusRequest(), timeout=args.timeout)
            req_cls, resp_cls = health_messages()
            check = ch.unary_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=req_cls.SerializeToString,
                                   response_deserializer=resp_cls.FromString)
            health = {}
            for svc in ("", READINESS):
                r = check(req_cls(service=svc), timeout=args.timeout)
                health[svc] = resp_cls.DESCRIPTOR.enum_types_by_name["ServingStatus"].values_by_number[r.status].name
        except grpc.RpcError as e:
            print(f"admin_status: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    out = {
        "status": json_format.MessageToDict(st, preserving_proto_field_name=True),
        "health": health,
    }
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
