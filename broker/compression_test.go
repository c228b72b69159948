package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A way producers compress the records section of a batch.
type compressor struct {
	name  string
	codec int16
	enc   func(t testing.TB, data []byte) []byte
}

var compressors = []compressor{
	{"gzip", 1, func(t testing.TB, data []byte) []byte {
		var buf bytes.Buffer
		w, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		return buf.Bytes()
	}},
	{"snappy", 2, func(t testing.TB, data []byte) []byte { return s2.EncodeSnappy(nil, data) }},
	{"snappy-xerial", 2, func(t testing.TB, data []byte) []byte {
		// The Java client's framing: magic, version 1, compatible 1,
		// then length-prefixed raw blocks of 32 KiB input each.
		out := append(append([]byte{}, xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1)
		for len(data) > 0 {
			n := min(len(data), 32<<10)
			block := s2.EncodeSnappy(nil, data[:n])
			out = binary.BigEndian.AppendUint32(out, uint32(len(block)))
			out = append(out, block...)
			data = data[n:]
		}
		return out
	}},
	{"lz4", 3, func(t testing.TB, data []byte) []byte {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if err := w.Apply(lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		return buf.Bytes()
	}},
	{"zstd", 4, func(t testing.TB, data []byte) []byte {
		// One shot: the frame declares its content size (librdkafka, franz-go).
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(data, nil)
	}},
	{"zstd-stream", 4, func(t testing.TB, data []byte) []byte {
		// Streamed: no content size, a 1 MiB window (the Java client).
		var buf bytes.Buffer
		enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithWindowSize(1<<20))
		if err != nil {
			t.Fatal(err)
		}
		enc.Write(data)
		enc.Close()
		return buf.Bytes()
	}},
}

// testRecords returns n encoded records with values of size bytes.
func testRecords(n, size int) []byte {
	var out []byte
	for i := 0; i < n; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprint(i)), Value: bytes.Repeat([]byte{'v'}, size)}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1) // the length varint of 0 took one byte
		out = append(out, r.AppendTo(nil)...)
	}
	return out
}

// Every codec's records decompress and parse; a wrong record count,
// trailing bytes or damaged compressed data are refused.
func TestCheckCompressedRecords(t *testing.T) {
	const n = 300
	records := testRecords(n, 500)
	for _, c := range compressors {
		data := c.enc(t, records)
		damaged := append([]byte{}, data...)
		for i := len(damaged) / 3; i < len(damaged)/3+16; i++ {
			damaged[i] ^= 0x5a
		}
		for _, tc := range []struct {
			what    string
			data    []byte
			records int32
			want    string // "" for success
		}{
			{"valid", data, n, ""},
			{"one record more than sent", data, n + 1, "cut short"},
			{"one record less than sent", data, n - 1, "after the last"},
			{"damaged", damaged, n, "?"},
		} {
			t.Run(c.name+"/"+tc.what, func(t *testing.T) {
				err := checkRecordsData(c.codec, tc.data, tc.records, 64<<20)
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.want == "":
				case err == nil:
					t.Fatal("accepted")
				case tc.want != "?" && !strings.Contains(err.Error(), tc.want):
					t.Fatalf("error %q, want it to mention %q", err, tc.want)
				}
			})
		}
	}
}

// A "zip bomb" (a small batch of valid records that decompresses to far
// more than the cap) is refused when the cap is reached: decompression
// stops there, and allocates about the cap at most, whatever the codec.
func TestDecompressionBombStopsAtCap(t *testing.T) {
	const limit = 4 << 20
	record := testRecords(1, 1000)
	n := (64 << 20) / len(record)
	bomb := bytes.Repeat(record, n) // 64 MiB: 16 times the cap
	for _, c := range compressors {
		t.Run(c.name, func(t *testing.T) {
			data := c.enc(t, bomb)
			t.Logf("%d bytes decompress to %d", len(data), len(bomb))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := checkRecordsData(c.codec, data, int32(n), limit)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errDecompressedTooLarge) {
				t.Fatalf("error %v, want %v", err, errDecompressedTooLarge)
			}
			// Slack for the decoders' own buffers (lz4 blocks, zstd window)
			// and the test's few allocations; the 64 MiB is far beyond it.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit+(8<<20) {
				t.Fatalf("allocated %d MiB to refuse it; the cap is %d MiB", alloc>>20, limit>>20)
			}
		})
	}
}

// compressedBatch encodes n records compressed with codec as a produce
// batch, with its length and CRC set as a producer sets them.
func compressedBatch(codec int16, data []byte, n int) []byte {
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, Attributes: codec, LastOffsetDelta: int32(n - 1),
		FirstTimestamp: now, MaxTimestamp: now, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(n), Records: data,
	}
	raw := rb.AppendTo(nil)
	rb.Length = int32(len(raw) - 12)
	raw = rb.AppendTo(nil)
	rb.CRC = int32(crc32c(raw[21:]))
	return rb.AppendTo(nil)
}

// logRecorder keeps the log lines that contain want.
type logRecorder struct {
	t    *testing.T
	want string
	mu   sync.Mutex
	hits []string
}

func (l *logRecorder) Write(p []byte) (int, error) {
	l.t.Log(string(p))
	if bytes.Contains(p, []byte(l.want)) {
		l.mu.Lock()
		l.hits = append(l.hits, string(p))
		l.mu.Unlock()
	}
	return len(p), nil
}

// Through Produce: a real client's batches of every codec are stored and
// read back, and a bomb of every codec is refused with CORRUPT_MESSAGE and
// a warning in the log, while the batch itself is within max.message.bytes.
func TestProduceDecompressionBomb(t *testing.T) {
	logs := &logRecorder{t: t, want: "decompresses past the cap"}
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: logs, Level: hclog.Info})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	const maxBytes = 512 << 10 // the cap is 32 MiB
	ct := kmsg.NewPtrCreateTopicsRequest()
	for _, name := range []string{"bombs", "gzip", "snappy", "lz4", "zstd"} {
		tt := kmsg.NewCreateTopicsRequestTopic()
		tt.Topic, tt.NumPartitions, tt.ReplicationFactor = name, 1, 1
		v := fmt.Sprint(maxBytes)
		tt.Configs = append(tt.Configs, kmsg.CreateTopicsRequestTopicConfig{Name: "max.message.bytes", Value: &v})
		ct.Topics = append(ct.Topics, tt)
	}
	if resp, err := ct.RequestWith(ctx, cl); err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("CreateTopics: %v %+v", err, resp)
	}

	for _, c := range []struct {
		topic string
		codec kgo.CompressionCodec
	}{{"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()}, {"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}} {
		pcl := newClient(t, addr, kgo.DefaultProduceTopic(c.topic), kgo.ProducerBatchCompression(c.codec), kgo.ProducerBatchMaxBytes(maxBytes))
		var want []string
		for i := 0; i < 50; i++ {
			want = append(want, strings.Repeat(fmt.Sprint(i), 100))
			pcl.Produce(ctx, kgo.StringRecord(want[i]), nil)
		}
		if err := pcl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pcl.ProduceSync(ctx, kgo.StringRecord("last")).FirstErr(); err != nil {
			t.Fatalf("%s: %v", c.topic, err)
		}
		got := consumeAll(t, addr, c.topic, 51)
		if fmt.Sprint(got[:50]) != fmt.Sprint(want) {
			t.Fatalf("%s: consumed other records than produced", c.topic)
		}
	}

	record := testRecords(1, 1000)
	n := (64 << 20) / len(record)
	bomb := bytes.Repeat(record, n)
	for _, c := range compressors {
		if c.codec == 2 {
			continue // snappy compresses 21:1 at most: too big for one batch
		}
		data := c.enc(t, bomb)
		req := kmsg.NewPtrProduceRequest()
		req.Acks = -1
		req.TimeoutMillis = 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "bombs"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = compressedBatch(c.codec, data, n)
		if len(rp.Records) > maxBytes {
			t.Fatalf("%s: the bomb takes %d bytes, more than max.message.bytes", c.name, len(rp.Records))
		}
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.CorruptMessage.Code {
			t.Fatalf("%s bomb: %v, want CORRUPT_MESSAGE", c.name, kerr.ErrorForCode(code))
		}
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if len(logs.hits) != len(compressors)-2 {
		t.Fatalf("%d warnings logged for %d bombs", len(logs.hits), len(compressors)-2)
	}
}
