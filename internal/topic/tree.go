package topic

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Sub is one subscription as the tree holds and returns it.
type Sub[V any] struct {
	Client string
	Filter string // the filter without any $share/GROUP/ prefix
	Group  string // the share group; empty for a non-shared subscription
	Value  V
}

// Tree holds subscriptions, (filter, client) -> V, for a broker's router:
// many filters, many more publishes. It is a trie with one level of the
// filter per node and separate children for + and #, so a publish visits
// only the branches that can match it instead of every filter.
//
// Shared subscriptions ($share/GROUP/FILTER) are grouped per (GROUP,
// FILTER); Match picks one member of each matching group, round-robin.
//
// A Tree is safe for concurrent use. Subscribe, Unsubscribe and
// RemoveClient take a write lock; Match, Len and Subscriptions a read
// lock, so publishes are routed in parallel. The round-robin positions are
// atomic counters, which is what lets Match run under the read lock.
type Tree[V any] struct {
	mu   sync.RWMutex
	root node[V]
	n    int // subscriptions, shared members included
	// filters holds each client's filters as subscribed, $share prefix
	// included, so a disconnect or a session resume need not walk the tree.
	filters map[string]map[string]struct{}
}

type node[V any] struct {
	children map[string]*node[V] // literal levels; nil until needed
	plus     *node[V]
	hash     *node[V]
	subs     subs[V]     // non-shared subscriptions ending here
	groups   []*group[V] // share groups whose filter ends here; few per node
}

// group is one share group's members for one filter [MQTT-4.8.2].
type group[V any] struct {
	name    string
	members subs[V]
	next    atomic.Uint64 // round-robin position, advanced under the read lock
}

// subs is a list of subscriptions by client: a slice for Match to copy
// out of, with an index by client once it is long enough to be worth one
// (most filters have one or two subscribers, a map each would cost more
// than the scan).
type subs[V any] struct {
	list []Sub[V]
	idx  map[string]int // client -> position in list; nil while list is short
}

const indexFrom = 16

func (s *subs[V]) find(client string) int {
	if s.idx != nil {
		if i, ok := s.idx[client]; ok {
			return i
		}
		return -1
	}
	for i := range s.list {
		if s.list[i].Client == client {
			return i
		}
	}
	return -1
}

// put adds sub or replaces the one of the same client.
func (s *subs[V]) put(sub Sub[V]) (replaced bool) {
	if i := s.find(sub.Client); i >= 0 {
		s.list[i] = sub
		return true
	}
	s.list = append(s.list, sub)
	switch {
	case s.idx != nil:
		s.idx[sub.Client] = len(s.list) - 1
	case len(s.list) >= indexFrom:
		s.idx = make(map[string]int, len(s.list))
		for i := range s.list {
			s.idx[s.list[i].Client] = i
		}
	}
	return false
}

// remove deletes client's subscription, moving the last one into its
// place; order carries no meaning.
func (s *subs[V]) remove(client string) bool {
	i := s.find(client)
	if i < 0 {
		return false
	}
	last := len(s.list) - 1
	if i != last {
		s.list[i] = s.list[last]
		if s.idx != nil {
			s.idx[s.list[i].Client] = i
		}
	}
	s.list[last] = Sub[V]{} // let go of the value
	s.list = s.list[:last]
	if s.idx != nil {
		delete(s.idx, client)
		if len(s.list) < indexFrom/2 {
			s.idx = nil
		}
	}
	if len(s.list) == 0 {
		s.list = nil
	}
	return true
}

// NewTree returns an empty tree.
func NewTree[V any]() *Tree[V] {
	return &Tree[V]{filters: map[string]map[string]struct{}{}}
}

// Subscribe stores v for (filter, client). A second Subscribe of the same
// filter by the same client replaces the first, so that the client keeps
// one subscription [MQTT-3.8.4-3]; replaced says so. filter is checked
// with ValidateFilter.
func (t *Tree[V]) Subscribe(filter, client string, v V) (replaced bool, err error) {
	if err := ValidateFilter(filter); err != nil {
		return false, err
	}
	groupName, inner, shared := ParseShared(filter)
	sub := Sub[V]{Client: client, Filter: inner, Group: groupName, Value: v}

	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for rest, more := inner, true; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		n = n.child(level)
	}
	if shared {
		g := n.group(groupName)
		if g == nil {
			g = &group[V]{name: groupName}
			n.groups = append(n.groups, g)
		}
		replaced = g.members.put(sub)
	} else {
		replaced = n.subs.put(sub)
	}
	if !replaced {
		t.n++
		fs := t.filters[client]
		if fs == nil {
			fs = map[string]struct{}{}
			t.filters[client] = fs
		}
		fs[filter] = struct{}{}
	}
	return replaced, nil
}

// child returns the node for level below n, creating it.
func (n *node[V]) child(level string) *node[V] {
	p := &n.plus
	switch level {
	case "+":
	case "#":
		p = &n.hash
	default:
		c := n.children[level]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*node[V]{}
			}
			c = &node[V]{}
			n.children[level] = c
		}
		return c
	}
	if *p == nil {
		*p = &node[V]{}
	}
	return *p
}

func (n *node[V]) group(name string) *group[V] {
	for _, g := range n.groups {
		if g.name == name {
			return g
		}
	}
	return nil
}

func (n *node[V]) empty() bool {
	return len(n.children) == 0 && n.plus == nil && n.hash == nil && len(n.subs.list) == 0 && len(n.groups) == 0
}

// Unsubscribe removes client's subscription to filter (written as it was
// subscribed, $share prefix included) and reports whether there was one.
func (t *Tree[V]) Unsubscribe(filter, client string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unsubscribe(filter, client)
}

func (t *Tree[V]) unsubscribe(filter, client string) bool {
	groupName, inner, shared := ParseShared(filter)
	if !t.root.remove(inner, groupName, shared, client) {
		return false
	}
	t.n--
	if fs := t.filters[client]; fs != nil {
		delete(fs, filter)
		if len(fs) == 0 {
			delete(t.filters, client)
		}
	}
	return true
}

// remove deletes the subscription at the node for the levels in rest,
// and prunes the nodes that leaves empty, so a tree that sees many
// short-lived filters does not grow without bound.
func (n *node[V]) remove(rest, groupName string, shared bool, client string) bool {
	level, rest, more := strings.Cut(rest, "/")
	var c *node[V]
	switch level {
	case "+":
		c = n.plus
	case "#":
		c = n.hash
	default:
		c = n.children[level]
	}
	if c == nil {
		return false
	}
	var ok bool
	switch {
	case more:
		ok = c.remove(rest, groupName, shared, client)
	case shared:
		for i, g := range c.groups {
			if g.name == groupName {
				ok = g.members.remove(client)
				if len(g.members.list) == 0 {
					c.groups = slices.Delete(c.groups, i, i+1)
				}
				break
			}
		}
	default:
		ok = c.subs.remove(client)
	}
	if ok && c.empty() {
		switch level {
		case "+":
			n.plus = nil
		case "#":
			n.hash = nil
		default:
			delete(n.children, level)
		}
	}
	return ok
}

// RemoveClient removes every subscription of client, as when a session
// ends, and returns how many there were.
func (t *Tree[V]) RemoveClient(client string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	removed := 0
	for filter := range t.filters[client] {
		if t.unsubscribe(filter, client) {
			removed++
		}
	}
	delete(t.filters, client)
	return removed
}

// Subscriptions returns client's subscriptions, non-shared ones first,
// then by group and filter, for resuming or persisting a session.
func (t *Tree[V]) Subscriptions(client string) []Sub[V] {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Sub[V]
	for filter := range t.filters[client] {
		groupName, inner, shared := ParseShared(filter)
		n := &t.root
		for rest, more := inner, true; more && n != nil; {
			var level string
			level, rest, more = strings.Cut(rest, "/")
			switch level {
			case "+":
				n = n.plus
			case "#":
				n = n.hash
			default:
				n = n.children[level]
			}
		}
		if n == nil {
			continue // cannot happen: filters mirrors the tree
		}
		s := &n.subs
		if shared {
			g := n.group(groupName)
			if g == nil {
				continue
			}
			s = &g.members
		}
		if i := s.find(client); i >= 0 {
			out = append(out, s.list[i])
		}
	}
	slices.SortFunc(out, func(a, b Sub[V]) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Filter, b.Filter))
	})
	return out
}

// Len returns the number of subscriptions, each shared member counted.
func (t *Tree[V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Match appends to out the subscriptions a message published to name goes
// to: every non-shared subscription whose filter matches (one entry per
// client and filter: a client with two matching filters appears twice,
// and the router decides how to merge them), and for each matching share
// group exactly one member. The member is chosen round-robin among those
// for which eligible returns true (nil means all are); if none is, among
// all members [MQTT-4.8.2]. eligible runs under the read lock, so it must
// not call the Tree's Subscribe, Unsubscribe or RemoveClient. Match does
// not allocate when out has room.
func (t *Tree[V]) Match(name string, out []Sub[V], eligible func(client string) bool) []Sub[V] {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// [MQTT-4.7.2-1] wildcards at the first level do not match $ topics.
	dollar := name != "" && name[0] == '$'
	return t.root.match(name, dollar, out, eligible)
}

// match collects from the subtree below n for the remaining levels of a
// topic name.
func (n *node[V]) match(name string, dollar bool, out []Sub[V], eligible func(string) bool) []Sub[V] {
	level, rest, more := strings.Cut(name, "/")
	if !dollar {
		if n.hash != nil {
			out = n.hash.collect(out, eligible)
		}
		if n.plus != nil {
			out = n.plus.next(rest, more, out, eligible)
		}
	}
	if c := n.children[level]; c != nil {
		out = c.next(rest, more, out, eligible)
	}
	return out
}

// next continues at n, which matched one level: deeper if the name has
// more levels, else n's own subscriptions and those of n/#, since "a/#"
// matches "a" [MQTT-4.7.1-2].
func (n *node[V]) next(rest string, more bool, out []Sub[V], eligible func(string) bool) []Sub[V] {
	if more {
		return n.match(rest, false, out, eligible)
	}
	out = n.collect(out, eligible)
	if n.hash != nil {
		out = n.hash.collect(out, eligible)
	}
	return out
}

func (n *node[V]) collect(out []Sub[V], eligible func(string) bool) []Sub[V] {
	out = append(out, n.subs.list...)
	for _, g := range n.groups {
		out = append(out, g.members.list[g.pick(eligible)])
	}
	return out
}

// pick returns the position of the next member, round-robin, skipping
// those not eligible. Concurrent Matches may now and then pick the same
// member; that costs evenness, never correctness.
func (g *group[V]) pick(eligible func(string) bool) int {
	m := g.members.list
	n := uint64(len(m))
	start := g.next.Add(1) - 1
	if eligible == nil {
		return int(start % n)
	}
	for k := range n {
		i := (start + k) % n
		if eligible(m[i].Client) {
			if k > 0 {
				// Skip the ineligible ones next time too, so the member
				// after them is not picked twice as often as the rest.
				g.next.Add(k)
			}
			return int(i)
		}
	}
	return int(start % n)
}
