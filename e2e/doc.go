// Package e2e holds Tandem's end-to-end tests: each test starts the real
// bin/tandem-broker (built by scripts/build.sh) as its own process, with its
// own data directory and port, and drives it with real Kafka clients:
// kafka-python (the Debian python3-kafka package, through the scripts in
// clients/), kcat (librdkafka), franz-go (kgo, kadm) and sarama.
//
// Run them with
//
//	scripts/build.sh && go test -race ./e2e/
//
// When bin/tandem-broker is missing, TestMain runs scripts/build.sh first;
// TANDEM_E2E_BROKER=/path/to/binary tests another build instead. A
// failing test prints the tail of the broker's log; set TANDEM_TEST_LOG_DIR
// to keep every log, TANDEM_TEST_VERBOSE=1 to print them for passing tests too.
package e2e
