package wal

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	epochsFile   = "epochs"
	epochsHeader = "tandem-wal-epochs v1"
)

// encodeEpochs renders the epoch history file (format in doc.go).
func encodeEpochs(hist []EpochStart) []byte {
	var b bytes.Buffer
	b.WriteString(epochsHeader + "\n")
	for _, s := range hist {
		fmt.Fprintf(&b, "%d %d\n", s.Epoch, s.StartLSN)
	}
	fmt.Fprintf(&b, "crc32c %08x\n", crc32.Checksum(b.Bytes(), castagnoli))
	return b.Bytes()
}

// decodeEpochs parses an epoch history file and checks its CRC and that
// epochs strictly increase and start LSNs never decrease.
func decodeEpochs(data []byte) ([]EpochStart, error) {
	i := bytes.LastIndex(data, []byte("crc32c "))
	if i < len(epochsHeader)+1 || !bytes.HasPrefix(data, []byte(epochsHeader+"\n")) || data[i-1] != '\n' {
		return nil, errors.New("missing header or crc32c line")
	}
	want, err := strconv.ParseUint(strings.TrimSpace(string(data[i+len("crc32c "):])), 16, 32)
	if err != nil {
		return nil, fmt.Errorf("bad crc32c line: %v", err)
	}
	if got := crc32.Checksum(data[:i], castagnoli); uint32(want) != got {
		return nil, fmt.Errorf("crc32c mismatch: file says %08x, content has %08x", want, got)
	}
	lines := strings.Split(strings.TrimSuffix(string(data[len(epochsHeader)+1:i]), "\n"), "\n")
	var hist []EpochStart
	for n, line := range lines {
		if line == "" && len(lines) == 1 {
			break
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d %q: want \"<epoch> <start_lsn>\"", n+2, line)
		}
		epoch, err1 := strconv.ParseUint(fields[0], 10, 32)
		start, err2 := strconv.ParseUint(fields[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("line %d %q: %v", n+2, line, err)
		}
		s := EpochStart{Epoch: uint32(epoch), StartLSN: start}
		if k := len(hist); k > 0 && (s.Epoch <= hist[k-1].Epoch || s.StartLSN < hist[k-1].StartLSN) {
			return nil, fmt.Errorf("line %d: epoch %d at LSN %d does not follow epoch %d at LSN %d",
				n+2, s.Epoch, s.StartLSN, hist[k-1].Epoch, hist[k-1].StartLSN)
		}
		hist = append(hist, s)
	}
	return hist, nil
}

// readEpochs loads the epoch history of dir. found is false when the file
// does not exist.
func readEpochs(dir string) (hist []EpochStart, found bool, err error) {
	path := filepath.Join(dir, epochsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("wal: read epoch history: %w", err)
	}
	hist, err = decodeEpochs(data)
	if err != nil {
		return nil, true, fmt.Errorf("%w: epoch history %s: %v (delete the file to rebuild it from the WAL entries; epoch starts older than the first segment are then lost)",
			ErrCorrupt, path, err)
	}
	return hist, true, nil
}

// writeEpochs replaces the epoch history of dir atomically: temp file,
// fsync, rename, fsync of the directory.
func writeEpochs(dir string, hist []EpochStart) error {
	path := filepath.Join(dir, epochsFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("wal: write epoch history: %w", err)
	}
	if _, err := f.Write(encodeEpochs(hist)); err != nil {
		f.Close()
		return fmt.Errorf("wal: write epoch history %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: fsync epoch history %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wal: close epoch history %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("wal: install epoch history: %w", err)
	}
	return syncDir(dir)
}

// reconcileEpochs merges the persisted history with the epoch transitions
// observed in the entries [firstLSN, lastLSN]. Entries are the truth for the
// range they cover; persisted starts before firstLSN (whose entries were
// deleted) are kept; starts beyond lastLSN are dropped.
func reconcileEpochs(persisted []EpochStart, firstLSN uint64, observed []EpochStart) []EpochStart {
	var out []EpochStart
	for _, s := range persisted {
		if s.StartLSN < firstLSN {
			out = append(out, s)
		}
	}
	for _, o := range observed {
		for len(out) > 0 && out[len(out)-1].Epoch > o.Epoch {
			out = out[:len(out)-1]
		}
		if len(out) == 0 || o.Epoch > out[len(out)-1].Epoch {
			out = append(out, o)
		}
	}
	return out
}

func equalEpochs(a, b []EpochStart) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
