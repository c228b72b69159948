package group

// ListGroups (API key 16), versions 0-5.
//
// Lists every group this coordinator knows, sorted by name, including
// groups that only hold committed offsets (state Empty, protocol type "").
// v4+ filters by state (case-insensitive, KIP-518) and reports each group's
// state; v5+ filters by type and reports each group's type (KIP-848):
// "consumer" for a group of the consumer protocol, else "classic".

import (
	"context"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// GroupType is the KIP-848 group type of a classic group.
const GroupType = "classic"

// ListGroups handles a ListGroups request. It never blocks.
func (c *Coordinator) ListGroups(_ context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := kmsg.NewPtrListGroupsResponse()
	resp.Version = req.Version
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	if c.inactive {
		return resp // this node coordinates no group
	}
	match := func(filter []string, v string) bool {
		if len(filter) == 0 {
			return true
		}
		for _, f := range filter {
			if strings.EqualFold(f, v) {
				return true
			}
		}
		return false
	}
	names := make([]string, 0, len(c.groups))
	for name := range c.groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g := c.groups[name]
		state, typ := g.state.String(), GroupType
		if g.cg != nil {
			state, typ = g.cg.stateName(), ConsumerProtocolType
		}
		if req.Version >= 4 && !match(req.StatesFilter, state) {
			continue
		}
		if req.Version >= 5 && !match(req.TypesFilter, typ) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = name
		lg.ProtocolType = g.protocolType
		lg.GroupState = state
		lg.GroupType = typ
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}
