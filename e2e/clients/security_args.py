"""TLS and SASL options shared by the kafka-python client scripts.

add_arguments(ap) adds --ssl-cafile, --ssl-certfile, --ssl-keyfile,
--sasl-mechanism, --sasl-user and --sasl-password; client_options(args)
turns them into KafkaProducer / KafkaConsumer keyword arguments
(security_protocol SSL, SASL_PLAINTEXT or SASL_SSL), empty without them.
"""


def add_arguments(ap):
    ap.add_argument("--ssl-cafile", default=None,
                    help="connect with TLS (security_protocol SSL), trusting this CA")
    ap.add_argument("--ssl-certfile", default=None, help="with --ssl-cafile: client certificate")
    ap.add_argument("--ssl-keyfile", default=None, help="with --ssl-cafile: client key")
    ap.add_argument("--sasl-mechanism", default=None,
                    help="log in with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    ap.add_argument("--sasl-user", default=None)
    ap.add_argument("--sasl-password", default=None)


def client_options(args):
    opts = {}
    if args.ssl_cafile:
        opts.update(security_protocol="SSL", ssl_cafile=args.ssl_cafile,
                    ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    if args.sasl_mechanism:
        opts.update(security_protocol="SASL_SSL" if args.ssl_cafile else "SASL_PLAINTEXT",
                    sasl_mechanism=args.sasl_mechanism,
                    sasl_plain_username=args.sasl_user, sasl_plain_password=args.sasl_password)
    return opts
