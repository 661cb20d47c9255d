package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// matched renders Match's result sorted, for comparing with a want list.
func matched(subs []Sub[int]) []string {
	var out []string
	for _, s := range subs {
		f := s.Filter
		if s.Group != "" {
			f = "$share/" + s.Group + "/" + f
		}
		out = append(out, fmt.Sprintf("%s %s=%d", s.Client, f, s.Value))
	}
	slices.Sort(out)
	return out
}

func TestTreeMatch(t *testing.T) {
	tr := NewTree[int]()
	for i, f := range []string{"#", "+", "+/+", "a/#", "a/+", "a/b", "a//b", "/", "/+", "$SYS/#", "$SYS/+", "+/b", "a/+/#"} {
		if _, err := tr.Subscribe(f, "c", i); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"a", []string{"c #=0", "c +=1", "c a/#=3"}},
		{"a/b", []string{"c #=0", "c +/+=2", "c +/b=11", "c a/#=3", "c a/+/#=12", "c a/+=4", "c a/b=5"}},
		{"a/", []string{"c #=0", "c +/+=2", "c a/#=3", "c a/+/#=12", "c a/+=4"}},
		{"a//b", []string{"c #=0", "c a/#=3", "c a/+/#=12", "c a//b=6"}},
		{"/", []string{"c #=0", "c +/+=2", "c /+=8", "c /=7"}},
		{"$SYS/x", []string{"c $SYS/#=9", "c $SYS/+=10"}},
		{"$SYS", []string{"c $SYS/#=9"}},
		{"$other", nil},
	} {
		if got := matched(tr.Match(tc.name, nil, nil)); !slices.Equal(got, tc.want) {
			t.Errorf("Match(%q) = %q, want %q", tc.name, got, tc.want)
		}
		// Each result agrees with the plain Match.
		for _, s := range tr.Match(tc.name, nil, nil) {
			if !Match(s.Filter, tc.name) {
				t.Errorf("Match(%q) returned %q, which does not match", tc.name, s.Filter)
			}
		}
	}
}

func TestTreeSubscribeReplaces(t *testing.T) {
	tr := NewTree[int]()
	for i, c := range []struct {
		filter, client string
		replaced       bool
	}{
		{"a/+", "c1", false},
		{"a/+", "c1", true}, // [MQTT-3.8.4-3] one subscription per (filter, client)
		{"a/+", "c2", false},
		{"a/#", "c1", false},
		{"$share/g/a/+", "c1", false}, // a shared subscription is a different one
		{"$share/g/a/+", "c1", true},
		{"$share/h/a/+", "c1", false},
	} {
		replaced, err := tr.Subscribe(c.filter, c.client, i)
		if err != nil || replaced != c.replaced {
			t.Errorf("Subscribe(%q, %q) = %v, %v; want %v", c.filter, c.client, replaced, err, c.replaced)
		}
	}
	if tr.Len() != 5 {
		t.Errorf("Len = %d, want 5", tr.Len())
	}
	// The replacement's value is the one kept.
	if got := matched(tr.Match("a/x", nil, nil)); !slices.Equal(got, []string{"c1 $share/g/a/+=5", "c1 $share/h/a/+=6", "c1 a/#=3", "c1 a/+=1", "c2 a/+=2"}) {
		t.Errorf("Match = %q", got)
	}
	if _, err := tr.Subscribe("a/#/b", "c1", 0); err == nil {
		t.Error("Subscribe accepted an invalid filter")
	}
}

func TestTreeUnsubscribePrunes(t *testing.T) {
	tr := NewTree[int]()
	filters := []string{"a/b/c", "a/+/c", "a/#", "#", "+", "$share/g/a/b", "$share/h/a/b", "a//", "/"}
	for _, f := range filters {
		tr.Subscribe(f, "c1", 1)
		tr.Subscribe(f, "c2", 2)
	}
	if tr.Unsubscribe("a/b/c", "c3") || tr.Unsubscribe("x/y", "c1") || tr.Unsubscribe("$share/x/a/b", "c1") {
		t.Error("Unsubscribe of something never subscribed reported true")
	}
	for _, f := range filters {
		for _, c := range []string{"c1", "c2"} {
			if !tr.Unsubscribe(f, c) {
				t.Errorf("Unsubscribe(%q, %q) = false", f, c)
			}
			if tr.Unsubscribe(f, c) {
				t.Errorf("second Unsubscribe(%q, %q) = true", f, c)
			}
		}
	}
	if tr.Len() != 0 || !tr.root.empty() || len(tr.filters) != 0 {
		t.Errorf("after unsubscribing everything: Len %d, root empty %v, %d clients", tr.Len(), tr.root.empty(), len(tr.filters))
	}
}

func TestTreeRemoveClientAndSubscriptions(t *testing.T) {
	tr := NewTree[int]()
	tr.Subscribe("a/#", "c1", 1)
	tr.Subscribe("$share/g/a/b", "c1", 2)
	tr.Subscribe("b", "c1", 3)
	tr.Subscribe("a/#", "c2", 4)
	want := []Sub[int]{{Client: "c1", Filter: "a/#", Value: 1}, {Client: "c1", Filter: "b", Value: 3}, {Client: "c1", Filter: "a/b", Group: "g", Value: 2}}
	if got := tr.Subscriptions("c1"); !slices.Equal(got, want) {
		t.Errorf("Subscriptions(c1) = %+v, want %+v", got, want)
	}
	if n := tr.RemoveClient("c1"); n != 3 {
		t.Errorf("RemoveClient(c1) = %d, want 3", n)
	}
	if got := tr.Subscriptions("c1"); got != nil {
		t.Errorf("Subscriptions(c1) after RemoveClient = %+v", got)
	}
	if got := matched(tr.Match("a/b", nil, nil)); !slices.Equal(got, []string{"c2 a/#=4"}) {
		t.Errorf("Match after RemoveClient = %q", got)
	}
	if tr.Len() != 1 || tr.RemoveClient("c1") != 0 {
		t.Errorf("Len = %d, want 1", tr.Len())
	}
}

func TestTreeSharedRoundRobin(t *testing.T) {
	tr := NewTree[int]()
	members := []string{"m0", "m1", "m2", "m3"}
	for i, m := range members {
		tr.Subscribe("$share/g/jobs/+", m, i)
	}
	tr.Subscribe("$share/other/jobs/#", "x", 9)
	tr.Subscribe("jobs/+", "plain", 8)
	count := map[string]int{}
	for range 400 {
		got := tr.Match("jobs/1", nil, nil)
		if len(got) != 3 {
			t.Fatalf("Match = %+v, want one per group and the plain one", got)
		}
		for _, s := range got {
			count[s.Client]++
		}
	}
	for _, m := range members {
		if count[m] != 100 {
			t.Errorf("member %s got %d of 400, want 100: %v", m, count[m], count)
		}
	}
	if count["x"] != 400 || count["plain"] != 400 {
		t.Errorf("counts %v", count)
	}

	// Only m1 and m3 connected: they share evenly; the others get nothing.
	clear(count)
	online := func(c string) bool { return c == "m1" || c == "m3" || c == "x" || c == "plain" }
	for range 400 {
		for _, s := range tr.Match("jobs/1", nil, online) {
			count[s.Client]++
		}
	}
	if count["m1"] != 200 || count["m3"] != 200 || count["m0"]+count["m2"] != 0 {
		t.Errorf("with m1 and m3 eligible: %v", count)
	}

	// Nobody eligible: still exactly one, round-robin over all.
	clear(count)
	for range 400 {
		for _, s := range tr.Match("jobs/1", nil, func(string) bool { return false }) {
			count[s.Client]++
		}
	}
	for _, m := range members {
		if count[m] != 100 {
			t.Errorf("none eligible: member %s got %d of 400, want 100: %v", m, count[m], count)
		}
	}
}

// Many members: the tree switches to an index by client; replacing and
// removing must keep it right.
func TestTreeManySubscribers(t *testing.T) {
	tr := NewTree[int]()
	const n = 100
	for i := range n {
		tr.Subscribe("a/b", fmt.Sprint("c", i), i)
		tr.Subscribe("$share/g/a/b", fmt.Sprint("c", i), i)
	}
	for i := range n {
		if replaced, _ := tr.Subscribe("a/b", fmt.Sprint("c", i), -i); !replaced {
			t.Fatalf("c%d not replaced", i)
		}
	}
	for i := 0; i < n; i += 2 {
		if !tr.Unsubscribe("a/b", fmt.Sprint("c", i)) || !tr.Unsubscribe("$share/g/a/b", fmt.Sprint("c", i)) {
			t.Fatalf("c%d not unsubscribed", i)
		}
	}
	got := tr.Match("a/b", nil, nil)
	if len(got) != n/2+1 {
		t.Fatalf("%d matches, want %d", len(got), n/2+1)
	}
	for _, s := range got {
		var i int
		fmt.Sscanf(s.Client, "c%d", &i)
		if i%2 == 0 || (s.Group == "" && s.Value != -i) {
			t.Errorf("unexpected %+v", s)
		}
	}
	if tr.Len() != n {
		t.Errorf("Len = %d, want %d", tr.Len(), n)
	}
}

// randomTopic makes a filter (wildcards allowed) or a name from a small
// alphabet of levels, so that random pairs match often enough to matter.
func randomTopic(r *rand.Rand, filter bool) string {
	levels := []string{"a", "b", "", "$SYS", "c"}
	n := 1 + r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = levels[r.IntN(len(levels))]
		if filter && r.IntN(4) == 0 {
			parts[i] = "+"
		}
	}
	if filter && r.IntN(4) == 0 {
		parts[n-1] = "#"
	}
	return strings.Join(parts, "/")
}

// The tree and the plain Match agree on random filters and names.
func TestTreeAgreesWithMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tr := NewTree[int]()
	filters := map[int]string{} // by client number
	for i := range 300 {
		f := randomTopic(r, true)
		if r.IntN(5) == 0 {
			f = "$share/g" + fmt.Sprint(i%3) + "/" + f
		}
		if ValidateFilter(f) != nil {
			continue // "" and "$share/g/"
		}
		if _, err := tr.Subscribe(f, fmt.Sprint("c", i), i); err != nil {
			t.Fatal(err)
		}
		filters[i] = f
	}
	for range 2000 {
		name := randomTopic(r, false)
		var want []string
		groups := map[string]bool{}
		for i, f := range filters {
			if !Match(f, name) {
				continue
			}
			if g, in, shared := ParseShared(f); shared {
				groups[g+" "+in] = true
				continue
			}
			want = append(want, fmt.Sprintf("c%d %s=%d", i, f, i))
		}
		var got []string
		gotGroups := map[string]bool{}
		for _, s := range tr.Match(name, nil, nil) {
			if s.Group != "" {
				key := s.Group + " " + s.Filter
				if gotGroups[key] {
					t.Fatalf("Match(%q): two members of %s", name, key)
				}
				gotGroups[key] = true
				continue
			}
			got = append(got, fmt.Sprintf("%s %s=%d", s.Client, s.Filter, s.Value))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) || len(groups) != len(gotGroups) {
			t.Fatalf("Match(%q) = %q %v, want %q %v", name, got, gotGroups, want, groups)
		}
	}
}

func TestTreeMatchDoesNotAllocate(t *testing.T) {
	tr := NewTree[int]()
	for i, f := range []string{"a/+/c", "a/#", "#", "$share/g/a/b/c", "$share/g/a/b/+"} {
		tr.Subscribe(f, "c1", i)
		tr.Subscribe(f, "c2", i)
	}
	out := make([]Sub[int], 0, 16)
	eligible := func(c string) bool { return c == "c2" }
	if n := testing.AllocsPerRun(100, func() { out = tr.Match("a/b/c", out[:0], eligible) }); n != 0 || len(out) != 8 {
		t.Errorf("%v allocations, %d matches; want 0 and 8", n, len(out))
	}
}

// Match runs under the read lock while subscriptions change; -race checks
// the contract.
func TestTreeConcurrent(t *testing.T) {
	tr := NewTree[int]()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			client := fmt.Sprint("c", w)
			for i := range 500 {
				f := []string{"a/+", "$share/g/a/#", "a/b", "#"}[i%4]
				tr.Subscribe(f, client, i)
				if i%3 == 0 {
					tr.Unsubscribe(f, client)
				}
				if i%100 == 99 {
					tr.RemoveClient(client)
				}
			}
		})
		wg.Go(func() {
			var out []Sub[int]
			for range 2000 {
				out = tr.Match("a/b", out[:0], func(string) bool { return true })
				_ = tr.Subscriptions("c0")
			}
		})
	}
	wg.Wait()
}

// BenchmarkTreeMatch routes publishes through a tree of 10,000 filters:
// one op is one publish matched. Filters are a broker's usual mix:
// exact device topics, + per device or site, # per subtree, and shared
// groups of workers.
func BenchmarkTreeMatch(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 11))
	const sites, devices = 50, 400
	device := func() (int, int) { return r.IntN(sites), r.IntN(devices) }
	tr := NewTree[int]()
	for i := 0; tr.Len() < 10_000; i++ {
		s, d := device()
		var f string
		switch k := r.IntN(100); {
		case k < 60:
			f = fmt.Sprintf("site/%d/dev/%d/temp", s, d)
		case k < 80:
			f = fmt.Sprintf("site/%d/dev/+/temp", s)
		case k < 88:
			f = fmt.Sprintf("site/%d/dev/%d/#", s, d)
		case k < 90:
			f = fmt.Sprintf("site/%d/#", s)
		case k < 91:
			f = "site/+/dev/+/alarm"
		default:
			f = fmt.Sprintf("$share/workers%d/site/%d/dev/+/temp", i%5, s)
		}
		if _, err := tr.Subscribe(f, fmt.Sprint("client", i), i); err != nil {
			b.Fatal(err)
		}
	}
	names := make([]string, 100_000)
	for i := range names {
		s, d := device()
		names[i] = fmt.Sprintf("site/%d/dev/%d/%s", s, d, []string{"temp", "temp", "humidity", "alarm"}[r.IntN(4)])
	}
	out := make([]Sub[int], 0, 1024)
	eligible := func(string) bool { return true }
	matches := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		out = tr.Match(names[i%len(names)], out[:0], eligible)
		matches += len(out)
	}
	b.ReportMetric(float64(matches)/float64(b.N), "subs/publish")
}
