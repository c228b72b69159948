package sidecar

import (
	"testing"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// Entries read ahead from the broker's WAL go out in batches of at most
// the batch size (an entry larger than that alone), in order, each once.
func TestTakeBatchSplitsReadAheadEntries(t *testing.T) {
	sizes := []int{300, 300, 300, 1500, 100, 100, 900, 50}
	var ents []*linkv1.Entry
	for i, n := range sizes {
		ents = append(ents, &linkv1.Entry{Lsn: uint64(i + 1), Payload: make([]byte, n)})
	}
	var got [][]uint64
	rest := ents
	for len(rest) > 0 {
		var batch []*linkv1.Entry
		batch, rest = takeBatch(rest, 1000)
		var lsns []uint64
		size := 0
		for _, e := range batch {
			lsns = append(lsns, e.GetLsn())
			size += len(e.GetPayload())
		}
		if len(batch) == 0 || (len(batch) > 1 && size > 1000) {
			t.Fatalf("batch %v of %d bytes from a limit of 1000", lsns, size)
		}
		got = append(got, lsns)
	}
	want := [][]uint64{{1, 2, 3}, {4}, {5, 6}, {7, 8}}
	if len(got) != len(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("batches %v, want %v", got, want)
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("batches %v, want %v", got, want)
			}
		}
	}
	if batch, rest := takeBatch(nil, 1000); batch != nil || rest != nil {
		t.Fatalf("takeBatch(nil) = %v, %v", batch, rest)
	}
}
