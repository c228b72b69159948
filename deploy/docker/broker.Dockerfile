# tandem-broker image: the static broker binary on an empty (scratch) base.
#
# Built by scripts/images.sh, which stages the build context (nothing in it
# is pulled from a registry):
#   tandem-broker   bin/tandem-broker from scripts/build.sh (CGO_ENABLED=0)
#   empty/          an empty directory, copied to create the writable
#                   directories owned by the non-root user
#
# Volumes an operator mounts:
#   /var/lib/tandem  the broker's data directory (WAL and checkpoints)
#   /run/tandem      shared with the sidecar container; the sidecar creates
#                    its Unix socket at /run/tandem/link/sidecar.sock
FROM scratch

# Writable directories, owned by the user the broker runs as. When an empty
# named Docker volume is mounted on one of them, Docker copies this owner to
# the volume, so the broker can write there without running as root.
COPY --chown=65532:65532 empty/ /var/lib/tandem/
COPY --chown=65532:65532 empty/ /run/tandem/
COPY --chown=65532:65532 empty/ /tmp/

COPY tandem-broker /usr/local/bin/tandem-broker

# 65532 is the conventional "nonroot" uid/gid of distroless images. No
# /etc/passwd entry is needed: nothing in the broker looks the user up.
USER 65532:65532
WORKDIR /var/lib/tandem

# Kafka listener (the port in --listen; 9092 in deploy/compose and
# deploy/kubernetes).
EXPOSE 9092

ENTRYPOINT ["/usr/local/bin/tandem-broker"]
# Default: a standalone broker for `docker run -p 9092:9092 tandem-broker:dev`.
CMD ["--node-id", "1", "--data-dir", "/var/lib/tandem", "--listen", "0.0.0.0:9092", "--advertise", "127.0.0.1:9092"]
