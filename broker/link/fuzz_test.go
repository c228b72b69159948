package link

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tandem-io/tandem/broker/wal"
	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// FuzzAttachResponse feeds arbitrary bytes to what the broker does with a
// message from its sidecar before it touches the WAL: parse it, convert a
// cluster view, and pick the entries to append. Nothing may panic, and the
// entries picked must continue the log exactly.
func FuzzAttachResponse(f *testing.F) {
	for _, m := range []*linkv1.AttachResponse{
		{Payload: &linkv1.AttachResponse_ClusterView{ClusterView: &linkv1.ClusterView{Role: linkv1.Role_ROLE_FOLLOWER, LeaderId: 1, Epoch: 2,
			Brokers: []*linkv1.BrokerInfo{{NodeId: 1, Host: "h", Port: 9092}}, Isr: []int32{1, 2}}}},
		{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: []*linkv1.Entry{
			{Lsn: 4, Epoch: 1, Type: linkv1.EntryType_ENTRY_TYPE_RECORD_BATCH, Payload: []byte("x")},
			{Lsn: 5, Epoch: 1, Type: linkv1.EntryType_ENTRY_TYPE_NOOP}, {Lsn: 6, Epoch: 2, Type: 99}}}}},
		{Payload: &linkv1.AttachResponse_Replay{Replay: &linkv1.ReplayRequest{RequestId: 1, FromLsn: 3, MaxBytes: 1 << 20}}},
		{Payload: &linkv1.AttachResponse_TruncateTo{TruncateTo: &linkv1.TruncateTo{Lsn: 2}}},
		{Payload: &linkv1.AttachResponse_ResetTo{ResetTo: &linkv1.ResetTo{NextLsn: 9}}},
		{Payload: &linkv1.AttachResponse_Commit{Commit: &linkv1.CommitPoint{Lsn: 4}}},
		{Payload: &linkv1.AttachResponse_Subscribe{Subscribe: &linkv1.SubscribeCommitted{FromLsn: 5}}},
		{Payload: &linkv1.AttachResponse_Checksum{Checksum: &linkv1.ChecksumRequest{RequestId: 2, FromLsn: 1, ToLsn: 4}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m linkv1.AttachResponse
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		switch p := m.GetPayload().(type) {
		case *linkv1.AttachResponse_ClusterView:
			v := ViewFromProto(p.ClusterView)
			if len(v.Brokers) != len(p.ClusterView.GetBrokers()) {
				t.Fatalf("lost brokers converting %v", p.ClusterView)
			}
		case *linkv1.AttachResponse_Apply:
			const last = 3
			// The WAL holds LSNs 1-3: 1 in epoch 1, 2 and 3 in epoch 2.
			hist := []wal.EpochStart{{Epoch: 1, StartLSN: 1}, {Epoch: 2, StartLSN: 2}}
			ents, err := newEntries(last, p.Apply.GetEntries(), func() []wal.EpochStart { return hist })
			if err != nil {
				return
			}
			for _, pe := range p.Apply.GetEntries() {
				if lsn := pe.GetLsn(); lsn >= 1 && lsn <= last {
					if e, _ := epochAt(hist, lsn); e != pe.GetEpoch() {
						t.Fatalf("accepted a batch whose LSN %d has epoch %d where the WAL has %d", lsn, pe.GetEpoch(), e)
					}
				}
			}
			for i, e := range ents {
				if e.LSN != last+1+uint64(i) {
					t.Fatalf("picked LSN %d at %d", e.LSN, i)
				}
			}
		}
	})
}
