package broker

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeLogDirs (kafka-log-dirs.sh) names the WAL directory, the bytes
// of each partition's record batches and the file system's size and free
// space; a request for some partitions gets those only, and a topic that
// does not exist is left out, as Kafka does.
func TestDescribeLogDirs(t *testing.T) {
	dir := t.TempDir()
	_, addr := startBroker(t, dir)
	cl := newClient(t, addr)
	createTopic(t, cl, "a", 2)
	createTopic(t, cl, "b", 1)
	var want int64
	for i, n := range []int{1, 5, 20} {
		batch := rawBatch(-1, -1, -1, n)
		if r := produceRecords(t, cl, "a", batch); r.ErrorCode != 0 {
			t.Fatalf("batch %d: error %d", i, r.ErrorCode)
		}
		want += int64(len(batch))
	}
	adm := kadm.NewClient(cl)

	all, err := adm.DescribeAllLogDirs(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	walDir, _ := filepath.Abs(filepath.Join(dir, "wal"))
	d, ok := all[1][walDir]
	if !ok || len(all[1]) != 1 {
		t.Fatalf("log dirs %+v; want one, %s", all[1], walDir)
	}
	if d.Err != nil || d.TotalBytes <= 0 || d.UsableBytes <= 0 || d.UsableBytes > d.TotalBytes {
		t.Fatalf("dir: error %v, total %d, usable %d", d.Err, d.TotalBytes, d.UsableBytes)
	}
	sizes := map[string]int64{}
	d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
		sizes[fmt.Sprintf("%s/%d", p.Topic, p.Partition)] = p.Size
		if p.OffsetLag != 0 || p.IsFuture {
			t.Errorf("%s/%d: offset lag %d, future %v", p.Topic, p.Partition, p.OffsetLag, p.IsFuture)
		}
	})
	if len(sizes) != 3 || sizes["a/0"] != want || sizes["a/1"] != 0 || sizes["b/0"] != 0 {
		t.Fatalf("partition sizes %v; want a/0 to hold the %d bytes produced, a/1 and b/0 none", sizes, want)
	}

	// One partition only; an unknown topic is left out.
	req := kmsg.NewPtrDescribeLogDirsRequest()
	for _, tp := range []struct {
		topic string
		parts []int32
	}{{"a", []int32{0}}, {"nosuch", []int32{0}}} {
		rt := kmsg.NewDescribeLogDirsRequestTopic()
		rt.Topic, rt.Partitions = tp.topic, tp.parts
		req.Topics = append(req.Topics, rt)
	}
	kresp, err := cl.Broker(1).Request(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	resp := kresp.(*kmsg.DescribeLogDirsResponse)
	if len(resp.Dirs) != 1 || len(resp.Dirs[0].Topics) != 1 || resp.Dirs[0].Topics[0].Topic != "a" ||
		len(resp.Dirs[0].Topics[0].Partitions) != 1 || resp.Dirs[0].Topics[0].Partitions[0].Partition != 0 ||
		resp.Dirs[0].Topics[0].Partitions[0].Size != want {
		t.Fatalf("answer for a/0 and nosuch/0: %+v; want a/0 alone, %d bytes", resp.Dirs, want)
	}
}
