package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// clusterIDFile, in the data directory, holds the id of the cluster this
// broker's data belongs to, as a Kafka broker's meta.properties holds
// cluster.id: the first cluster view from a sidecar that names a cluster
// writes it, and the link then refuses a sidecar of any other cluster
// (link.ClusterKeeper), so that a data directory reused in, or moved to,
// another cluster is neither truncated nor overwritten to match it.
const clusterIDFile = "cluster-id"

// maxClusterIDBytes bounds the file's contents.
const maxClusterIDBytes = 255

// loadClusterID reads the data directory's cluster id ("" when none was
// kept yet).
func loadClusterID(dir string) (string, error) {
	path := filepath.Join(dir, clusterIDFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("broker: reading %s: %w", path, err)
	}
	id := strings.TrimSpace(string(data))
	if id == "" || len(id) > maxClusterIDBytes || strings.ContainsAny(id, "\n\r") {
		return "", fmt.Errorf("broker: %s does not hold a cluster id (%d bytes); it names the cluster this data directory belongs to: restore it, or remove it only if this directory belongs to the cluster of this node's sidecar", path, len(data))
	}
	return id, nil
}

// KeptClusterID is the cluster this broker's data belongs to, "" until a
// sidecar named one (link.ClusterKeeper).
func (b *Broker) KeptClusterID() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.clusterName
}

// KeepClusterID records id durably as the cluster this broker's data
// belongs to (link.ClusterKeeper); Metadata reports it from now on.
func (b *Broker) KeepClusterID(id string) error {
	if id == "" || len(id) > maxClusterIDBytes || strings.ContainsAny(id, "\n\r") {
		return fmt.Errorf("broker: not a cluster id: %q", id)
	}
	if err := writeFileDurably(filepath.Join(b.cfg.DataDir, clusterIDFile), []byte(id+"\n")); err != nil {
		return fmt.Errorf("broker: keeping the cluster id: %w", err)
	}
	b.mu.Lock()
	b.clusterName = id
	b.mu.Unlock()
	return nil
}
