package group

// AllOffsets returns a copy of every group's committed offsets. The broker
// saves it in its state checkpoint before retention deletes WAL segments
// that hold offset commits; Restore brings it back.
func (c *Coordinator) AllOffsets() map[string][]Offset {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]Offset, len(c.groups))
	for name, g := range c.groups {
		for _, parts := range g.offsets {
			for _, o := range parts {
				out[name] = append(out[name], o)
			}
		}
	}
	return out
}

// ResetOffsets forgets every committed offset, every group left with
// nothing and every stored group state (RestoreGroup), before the broker rebuilds its state from what is left of its
// WAL (a truncated tail, a re-clone): Restore then brings back the offsets
// that the remaining entries and state snapshot hold, and no others.
func (c *Coordinator) ResetOffsets() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.groups {
		g.offsets = make(map[string]map[int32]Offset)
		c.maybeDeleteLocked(g)
	}
	c.stored = make(map[string]GroupState)
}
