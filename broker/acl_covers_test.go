package broker

import (
	"strings"
	"testing"
)

// aclCoversBySplit is the plain statement of aclCovers, kept to check the
// allocation-free version against.
func aclCoversBySplit(acl, sub string) bool {
	if strings.HasPrefix(sub, "$") && (strings.HasPrefix(acl, "+") || strings.HasPrefix(acl, "#")) {
		return false
	}
	a, s := strings.Split(acl, "/"), strings.Split(sub, "/")
	for i, al := range a {
		if al == "#" {
			return true
		}
		if i >= len(s) {
			return false
		}
		switch sl := s[i]; {
		case al == "+":
			if sl == "#" {
				return false
			}
		case sl == "+" || sl == "#":
			return false
		case al != sl:
			return false
		}
	}
	return len(a) == len(s)
}

// Every filter and topic built from up to four levels of these parts.
func TestACLCoversMatchesSplitting(t *testing.T) {
	parts := []string{"a", "b", "+", "#", "", "$SYS"}
	var names []string
	var build func(prefix string, depth int)
	build = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, p := range parts {
			n := p
			if prefix != "" || depth < 4 {
				n = prefix + "/" + p
			}
			names = append(names, n)
			build(n, depth-1)
		}
	}
	build("", 4)
	names = append(names, "")
	for _, acl := range names {
		for _, sub := range names {
			if got, want := aclCovers(acl, sub), aclCoversBySplit(acl, sub); got != want {
				t.Fatalf("aclCovers(%q, %q) = %v, want %v", acl, sub, got, want)
			}
		}
	}
	t.Logf("%d pairs agree", len(names)*len(names))
}

func BenchmarkACLCovers(b *testing.B) {
	for b.Loop() {
		aclCovers("site/+/sensors/#", "site/lab/sensors/temp/1")
	}
}

func BenchmarkACLCoversBySplit(b *testing.B) {
	for b.Loop() {
		aclCoversBySplit("site/+/sensors/#", "site/lab/sensors/temp/1")
	}
}
