# tandem-sidecar image: the static sidecar binary on an empty (scratch)
# base, with tandemctl (operator CLI) and grpc-health-probe (health checks
# for Docker, which has no native gRPC health check; a scratch image has no
# shell, so a check must run a binary in exec form).
#
# Built by scripts/images.sh, which stages the build context (nothing in it
# is pulled from a registry):
#   bin/tandem-sidecar      from scripts/build.sh (CGO_ENABLED=0)
#   bin/tandemctl           from scripts/build.sh (CGO_ENABLED=0)
#   bin/grpc-health-probe   github.com/grpc-ecosystem/grpc-health-probe at the
#                           version pinned in scripts/images.sh, built static
#   empty/                  an empty directory, copied to create the writable
#                           directories owned by the non-root user
#
# Volume an operator mounts:
#   /run/tandem   shared with the broker container; the sidecar creates
#                 /run/tandem/link/ (mode 0700) and its socket in it
#
# Health (DESIGN.md decision 10), on the --listen port:
#   grpc-health-probe -addr=127.0.0.1:9192             liveness ("" service)
#   grpc-health-probe -addr=127.0.0.1:9192 -service=tandem.Readiness
FROM scratch

COPY --chown=65532:65532 empty/ /run/tandem/
COPY --chown=65532:65532 empty/ /tmp/

COPY bin/ /usr/local/bin/

USER 65532:65532

# Peers (tandem.replication.v1), the admin API (tandemctl) and gRPC health.
EXPOSE 9192

ENTRYPOINT ["/usr/local/bin/tandem-sidecar"]
CMD ["--help"]
