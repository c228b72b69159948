package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kcat runs kcat with args and stdin, failing the test on a non-zero exit or
// after timeout, and returns its stdout.
func kcat(t *testing.T, stdin string, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "kcat", args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("kcat %s timed out after %v\nstderr:\n%s", strings.Join(args, " "), timeout, tail(stderr.String(), 40))
	}
	if err != nil {
		t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(args, " "), err, tail(stderr.String(), 40))
	}
	// librdkafka reports delivery failures on stderr even when it exits 0.
	if strings.Contains(stderr.String(), "Delivery failed") {
		t.Fatalf("kcat %s reported failed deliveries:\n%s", strings.Join(args, " "), tail(stderr.String(), 40))
	}
	return stdout.String()
}

// TestKcatProduceConsume pipes lines into `kcat -P` (librdkafka's producer,
// with each compression codec; the broker stores compressed batches as they
// come) and reads them back with `kcat -C -o beginning -e`.
func TestKcatProduceConsume(t *testing.T) {
	b := startBroker(t)
	tests := []struct {
		codec string
		extra []string
	}{
		{"none", nil},
		{"gzip", []string{"-z", "gzip"}},
		{"snappy", []string{"-z", "snappy"}},
		{"lz4", []string{"-z", "lz4"}},
		{"zstd", []string{"-X", "compression.codec=zstd"}},
		// The idempotent producer of librdkafka (InitProducerId, sequences).
		{"idempotent", []string{"-X", "enable.idempotence=true"}},
	}
	for _, tc := range tests {
		t.Run(tc.codec, func(t *testing.T) {
			topic := "kcat-" + tc.codec
			want := seqValues("line-"+tc.codec+"-", 200)
			args := append([]string{"-P", "-b", b.Addr, "-t", topic}, tc.extra...)
			kcat(t, strings.Join(want, "\n")+"\n", 60*time.Second, args...)

			out := kcat(t, "", 60*time.Second,
				"-C", "-b", b.Addr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n")
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if out == "" {
				got = nil
			}
			requireSameValues(t, "kcat -C", got, want)
		})
	}
	b.requireAlive()
}
