package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/certs"
)

// TestKafkaClientsOverTLS: a three-node cluster whose brokers serve Kafka
// over TLS and require client certificates (--tls-cert, --tls-key,
// --tls-ca, --tls-client-auth). kcat (librdkafka), kafka-python, sarama and franz-go,
// each bootstrapped on a different node and presenting a certificate
// signed by the cluster's CA, produce to the leader and read everything
// back (the topic is auto-created through a follower, which asks the
// leader over TLS with its own certificate); the replicas verify
// identical. kcat without a client certificate is refused.
func TestKafkaClientsOverTLS(t *testing.T) {
	set, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(t.TempDir(), "certs"), Nodes: []int32{1, 2, 3},
		Hosts: []string{"127.0.0.1"}, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOpts{brokerFlags: []string{
		"--tls-cert", set.Shared[0], "--tls-key", set.Shared[1], "--tls-ca", set.CA, "--tls-client-auth",
	}})
	clientCrt, clientKey := set.Admin[0], set.Admin[1]
	const topic = "over-tls"

	// kcat through node 2 (a follower: Metadata sends it to the leader).
	kcatTLS := []string{"-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + set.CA,
		"-X", "ssl.certificate.location=" + clientCrt, "-X", "ssl.key.location=" + clientKey}
	kcatVals := seqValues("kcat-", 100)
	kcat(t, strings.Join(kcatVals, "\n")+"\n", 60*time.Second, append([]string{"-P", "-b", c.node(2).kafka, "-t", topic}, kcatTLS...)...)

	// kafka-python through node 3.
	var pyRes pyProduceResult
	runScript(t, 90*time.Second, &pyRes, python, clientScript(t, "kafka_python_produce.py"),
		"--bootstrap", c.node(3).kafka, "--topic", topic, "--count", "100", "--acks", "all", "--prefix", "python-",
		"--ssl-cafile", set.CA, "--ssl-certfile", clientCrt, "--ssl-keyfile", clientKey)
	if pyRes.Sent != 100 {
		t.Fatalf("kafka-python sent %d of 100 over TLS", pyRes.Sent)
	}

	// sarama through node 1.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(set.CA)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("reading %s: %v", set.CA, err)
	}
	pair, err := tls.LoadX509KeyPair(clientCrt, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tlsConf := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	scfg := saramaConfig()
	scfg.Net.TLS.Enable, scfg.Net.TLS.Config = true, tlsConf
	saramaVals := seqValues("sarama-", 100)
	saramaSend(t, c.node(1).kafka, scfg, topic, saramaVals)

	// franz-go reads everything back through node 3.
	readBackAll(t, c.node(3).kafka, topic, append(append(kcatVals, saramaVals...), seqValues("python-", 100)...),
		kgo.DialTLSConfig(tlsConf))

	// kcat reads them too, through node 2.
	out := kcat(t, "", 60*time.Second, append([]string{"-C", "-b", c.node(2).kafka, "-t", topic, "-o", "beginning", "-e", "-q"}, kcatTLS...)...)
	if n := len(strings.Fields(out)); n != 300 {
		t.Fatalf("kcat read %d records over TLS, want 300", n)
	}

	// Without a client certificate: refused.
	if err := kcatErr("", 20*time.Second, "-L", "-b", c.node(1).kafka, "-m", "5",
		"-X", "security.protocol=ssl", "-X", "ssl.ca.location="+set.CA); err == nil {
		t.Fatal("kcat without a client certificate listed the cluster")
	}
	c.waitInSync(30 * time.Second)
	c.mustVerify(1)
}

// kcatErr runs kcat with args and stdin and returns its error (a non-zero
// exit, with the tail of its stderr), for runs that must fail.
func kcatErr(stdin string, timeout time.Duration, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "kcat", args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, tail(stderr.String(), 5))
	}
	return nil
}

// saramaSend produces vals to topic, one SyncProducer message each, through
// the broker at addr with cfg.
func saramaSend(t *testing.T, addr string, cfg *sarama.Config, topic string, vals []string) {
	t.Helper()
	prod, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("sarama: %v", err)
	}
	defer prod.Close()
	for _, v := range vals {
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatalf("sarama SendMessage: %v", err)
		}
	}
}

// readBackAll reads topic from the start with franz-go (opts: TLS, SASL)
// through the broker at addr and fails unless every value of want is read.
func readBackAll(t *testing.T, addr, topic string, want []string, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]bool{}
	for _, r := range consumeN(t, cl, len(want), 60*time.Second) {
		got[string(r.Value)] = true
	}
	for _, v := range want {
		if !got[v] {
			t.Fatalf("%q was acknowledged but not read back (read %d distinct values)", v, len(got))
		}
	}
}
