package broker

// DescribeLogDirs (key 35), v0-v4.
//
// What kafka-log-dirs.sh, kadm's DescribeAllLogDirs and UIs such as
// kafka-ui show: this node's one log directory (the WAL under --data-dir)
// and, for every partition asked for (all when the request names no
// topics), the bytes of its record batches still served here. Every node
// answers for itself, followers included, so asking each node shows
// whether its replicas hold as much as the leader's. The size counts each
// partition's record batches as produced; the WAL's framing, metadata
// entries and batches below a partition's log start offset whose segment
// retention has not deleted yet are not attributed to any partition (the
// WAL's size on disk is its directory's). Offset lag is
// Kafka's for a current log: how far the log end offset is below the high
// watermark, 0 on a replica that holds everything committed. From v4 the
// directory's file system size and free bytes are answered too.

import (
	"path/filepath"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.DescribeLogDirs.Int16(), 0, 4, handleDescribeLogDirs) }

func handleDescribeLogDirs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeLogDirsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribe) {
		// As Kafka: the whole answer (v3+) carries the error, earlier
		// versions get no directory.
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = filepath.Join(b.cfg.DataDir, "wal")
	if abs, err := filepath.Abs(dir.Dir); err == nil {
		dir.Dir = abs
	}
	dir.TotalBytes, dir.UsableBytes = diskSpace(b.cfg.DataDir)

	// Which partitions: every one (Topics nil) or those named that exist.
	want := map[string][]int32{}
	if r.Topics == nil {
		for _, name := range b.topicNames() {
			want[name] = nil
		}
	} else {
		for _, t := range r.Topics {
			want[t.Topic] = append(want[t.Topic], t.Partitions...)
			if len(t.Partitions) == 0 {
				want[t.Topic] = []int32{} // named with no partitions: none
			}
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		snap, ok := b.topicSnap(name)
		if !ok {
			continue // Kafka leaves out partitions it does not host
		}
		parts := want[name]
		if parts == nil {
			for i := range snap.partitions {
				parts = append(parts, int32(i))
			}
		}
		st := kmsg.NewDescribeLogDirsResponseDirTopic()
		st.Topic = name
		for _, id := range parts {
			if id < 0 || int(id) >= len(snap.partitions) {
				continue
			}
			p := snap.partitions[id]
			sp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			sp.Partition = id
			p.mu.RLock()
			for _, ref := range p.batches {
				sp.Size += int64(ref.size)
			}
			sp.OffsetLag = max(p.hw-p.next, 0)
			p.mu.RUnlock()
			st.Partitions = append(st.Partitions, sp)
		}
		if len(st.Partitions) > 0 {
			dir.Topics = append(dir.Topics, st)
		}
	}
	resp.Dirs = append(resp.Dirs, dir)
	return now(resp)
}
