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
