package group

// Server-side assignors of the consumer group protocol (KIP-848). Both
// give every partition of every subscribed topic to exactly one member
// that subscribes to its topic.
//
//   - uniform (the default, Kafka's UniformAssignor): each member gets as
//     many partitions as the others, within one, among the members that
//     can take each partition; a partition stays with the member it was
//     assigned to before whenever that keeps the balance, so a member
//     joining or leaving moves as few partitions as possible.
//   - range (Kafka's RangeAssignor): per topic, the subscribers in member
//     id order get consecutive ranges of partitions, the first ones one
//     more when the partitions do not divide evenly. Topics with the same
//     partition count are split the same way (co-partitioning).

import (
	"slices"
	"sort"
)

type assignFunc func(members []*cmember, topics map[string]TopicInfo, prev map[string]partitions) map[string]partitions

var assignors = map[string]assignFunc{
	"uniform": assignUniform,
	"range":   assignRange,
}

// assign computes a target assignment with the named assignor (uniform if
// unknown). members are sorted by id.
func assign(name string, members []*cmember, topics map[string]TopicInfo, prev map[string]partitions) map[string]partitions {
	f := assignors[name]
	if f == nil {
		f = assignUniform
	}
	out := f(members, topics, prev)
	for _, m := range members {
		if out[m.id] == nil {
			out[m.id] = make(partitions)
		}
	}
	return out
}

// subscribers returns, per topic name, the members subscribing to it, in
// member id order.
func subscribers(members []*cmember, topics map[string]TopicInfo) map[string][]string {
	out := make(map[string][]string)
	for _, m := range members {
		for _, t := range m.subscribedTopics(topics) {
			out[t.Name] = append(out[t.Name], m.id)
		}
	}
	return out
}

func assignRange(members []*cmember, topics map[string]TopicInfo, _ map[string]partitions) map[string]partitions {
	out := make(map[string]partitions)
	subs := subscribers(members, topics)
	for _, name := range sortedKeys(topics) {
		t, ids := topics[name], subs[name]
		if len(ids) == 0 {
			continue
		}
		per, extra := int(t.Partitions)/len(ids), int(t.Partitions)%len(ids)
		p := int32(0)
		for i, id := range ids {
			n := per
			if i < extra {
				n++
			}
			for ; n > 0; n-- {
				if out[id] == nil {
					out[id] = make(partitions)
				}
				out[id].add(t.ID, p)
				p++
			}
		}
	}
	return out
}

type tp struct {
	id   [16]byte
	part int32
}

func assignUniform(members []*cmember, topics map[string]TopicInfo, prev map[string]partitions) map[string]partitions {
	subs := subscribers(members, topics)
	eligible := make(map[[16]byte]map[string]bool) // topic id -> members that may take it
	var all []tp
	for _, name := range sortedKeys(topics) {
		t := topics[name]
		if len(subs[name]) == 0 {
			continue
		}
		eligible[t.ID] = make(map[string]bool)
		for _, id := range subs[name] {
			eligible[t.ID][id] = true
		}
		for p := int32(0); p < t.Partitions; p++ {
			all = append(all, tp{t.ID, p})
		}
	}
	order := make([]string, len(members)) // member ids in id order
	for i, m := range members {
		order[i] = m.id
	}
	owner := make(map[tp]string, len(all))
	held := make(map[string][]tp) // member -> its partitions, in the order they came
	give := func(p tp, m string) {
		owner[p] = m
		held[m] = append(held[m], p)
	}

	// 1. Sticky: a partition stays with its previous owner if that member
	// may still take it.
	for _, p := range all {
		for _, m := range order {
			if prev[m].has(p.id, p.part) && eligible[p.id][m] {
				give(p, m)
				break
			}
		}
	}
	// 2. The rest, one by one, to the eligible member holding fewest.
	for _, p := range all {
		if _, ok := owner[p]; ok {
			continue
		}
		best := ""
		for _, m := range order {
			if eligible[p.id][m] && (best == "" || len(held[m]) < len(held[best])) {
				best = m
			}
		}
		give(p, best)
	}
	// 3. Balance: move a partition from a member with more to an eligible
	// member with at least two fewer, until no such move is left. Each move
	// lowers the sum of squared counts, so this ends.
	for moved := true; moved; {
		moved = false
		byCount := slices.Clone(order)
		sort.SliceStable(byCount, func(i, j int) bool { return len(held[byCount[i]]) > len(held[byCount[j]]) })
		for _, from := range byCount {
			ps := held[from]
			for i := len(ps) - 1; i >= 0 && !moved; i-- {
				p := ps[i]
				to := ""
				for _, m := range order {
					if m != from && eligible[p.id][m] && len(held[m]) <= len(ps)-2 && (to == "" || len(held[m]) < len(held[to])) {
						to = m
					}
				}
				if to != "" {
					held[from] = slices.Delete(ps, i, i+1)
					give(p, to)
					moved = true
				}
			}
			if moved {
				break
			}
		}
	}
	out := make(map[string]partitions)
	for m, ps := range held {
		out[m] = make(partitions)
		for _, p := range ps {
			out[m].add(p.id, p.part)
		}
	}
	return out
}
