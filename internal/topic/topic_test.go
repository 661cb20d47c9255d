package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // substring of the error; "" means valid
	}{
		{"a/b", ""},
		{"a b/ü/€/𝄞", ""},
		{"/", ""},  // two empty levels
		{"/a", ""}, // leading empty level
		{"a/", ""},
		{"a//b", ""},
		{"$SYS/broker/uptime", ""},
		{"$share/g/a", ""}, // only filters have a $share form
		{strings.Repeat("x", MaxLen), ""},
		{"", "topic name is empty: give one such as sensors/1/temp"},
		{strings.Repeat("x", MaxLen+1), `topic name "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"...: 65536 bytes, over MQTT's limit of 65535: shorten it`},
		{"a/+/b", `topic name "a/+/b": wildcards + and # are only for subscribing: publish to a concrete topic`},
		{"a/#", "wildcards"},
		{"#", "wildcards"},
		{"a+", "wildcards"},
		{"a\x00b", `topic name "a\x00b": contains U+0000 (NUL), which MQTT forbids: remove it`},
		{"\x00", "U+0000"},
		{"ab\xff", `topic name "ab\xff": not valid UTF-8 (at byte 2): fix its encoding`},
		{"\xc3", "not valid UTF-8"},         // truncated sequence
		{"\xed\xa0\x80", "not valid UTF-8"}, // U+D800, a surrogate [MQTT-1.5.4-1]
		{"\xc0\xaf", "not valid UTF-8"},     // overlong /
	} {
		err := ValidateName(tc.name)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ValidateName(%.20q) = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateName(%.20q) = %v, want %q", tc.name, err, tc.want)
			continue
		}
		if !errors.Is(err, ErrInvalidName) || errors.Is(err, ErrInvalidFilter) {
			t.Errorf("ValidateName(%.20q) = %v: errors.Is ErrInvalidName false", tc.name, err)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   string // substring of the error; "" means valid
	}{
		{"#", ""},
		{"+", ""},
		{"+/+", ""},
		{"a/+/c", ""},
		{"a/#", ""},
		{"+/#", ""},
		{"/#", ""},
		{"a//b", ""},
		{"/", ""},
		{"/a", ""},
		{"a/", ""},
		{"//", ""},
		{"/+/", ""},
		{"$SYS/#", ""},
		{"$share", ""},        // no slash: a plain one-level filter
		{"$sharegroup/a", ""}, // likewise
		{"$share/g/#", ""},
		{"$share/g/a/+/c", ""},
		{"$share/g/$SYS/#", ""},
		{"$share/g//", ""}, // the filter after the group is "/"
		{strings.Repeat("x", MaxLen), ""},
		{"", "topic filter is empty: give one such as sensors/#"},
		{strings.Repeat("x", MaxLen+1), "65536 bytes, over MQTT's limit of 65535"},
		{"a/#/b", `topic filter "a/#/b": # must be the last level (a/#)`},
		{"#/", `# must be the last level`},
		{"a#", `topic filter "a#": # must stand alone in its level (a/#, not a#)`},
		{"a/#b", "# must stand alone"},
		{"##", "# must stand alone"},
		{"a/b+", `topic filter "a/b+": + must stand alone in its level (a/+/c, not a/b+)`},
		{"+a", "+ must stand alone"},
		{"a/++/c", "+ must stand alone"},
		{"$share/g", `topic filter "$share/g": no filter after the share group: write $share/GROUP/FILTER`},
		{"$share/g/", `topic filter "$share/g/": the filter after the share group is empty`},
		{"$share//a", `topic filter "$share//a": the share group is empty`},
		{"$share/", "the share group is empty"},
		{"$share/g+/a", `topic filter "$share/g+/a": share group "g+" holds a wildcard`},
		{"$share/#/a", "holds a wildcard"},
		{"$share/g/a/#/b", `topic filter "$share/g/a/#/b": # must be the last level`},
		{"$share/g/a+", "+ must stand alone"},
		{"a\x00/#", `topic filter "a\x00/#": contains U+0000 (NUL)`},
		{"$share/g\x00/a", "U+0000"},
		{"a/\xff/#", `topic filter "a/\xff/#": not valid UTF-8 (at byte 2)`},
		{"$share/\xff/a", "not valid UTF-8"},
	} {
		err := ValidateFilter(tc.filter)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ValidateFilter(%.20q) = %v, want nil", tc.filter, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateFilter(%.20q) = %v, want %q", tc.filter, err, tc.want)
			continue
		}
		if !errors.Is(err, ErrInvalidFilter) || errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateFilter(%.20q) = %v: errors.Is ErrInvalidFilter false", tc.filter, err)
		}
	}
}

func TestParseShared(t *testing.T) {
	for _, tc := range []struct {
		filter, group, inner string
		shared               bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g", "g", "", true},
		{"$share//a", "", "a", true},
		{"a/b", "", "a/b", false},
		{"$share", "", "$share", false},
		{"$SYS/x", "", "$SYS/x", false},
	} {
		g, in, ok := ParseShared(tc.filter)
		if g != tc.group || in != tc.inner || ok != tc.shared {
			t.Errorf("ParseShared(%q) = %q, %q, %v; want %q, %q, %v", tc.filter, g, in, ok, tc.group, tc.inner, tc.shared)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, name string
		want         bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"a/#", "a", true}, // # includes the parent level
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false}, // two levels, both empty
		{"+/+", "/", true},
		{"/+", "/", true},
		{"+/", "/", true},
		{"+/+", "a", false},
		{"a/+", "a/", true}, // + matches an empty level
		{"a/+", "a", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a", false},
		{"+/#", "a", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"/a", "a", false},
		// [MQTT-4.7.2-1] a wildcard first never matches a $ topic.
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"+/#", "$SYS", false},
		{"+", "$x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/+", "$SYS/x", true},
		{"a/#", "a/$x", true}, // only the first level is special
		{"a/+", "a/$x", true},
		// A $share/GROUP/ prefix is ignored.
		{"$share/g/#", "a/b", true},
		{"$share/g/#", "$SYS/x", false},
		{"$share/g/a/+", "a/b", true},
		{"$share/g/a/+", "a/b/c", false},
		{"$share/g/$SYS/#", "$SYS/x", true},
	} {
		if got := Match(tc.filter, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.filter, tc.name, got, tc.want)
		}
	}
}

// coversBySplit is the plain statement of Covers (it was broker's
// aclCoversBySplit), kept to check the allocation-free version against.
func coversBySplit(outer, inner string) bool {
	if strings.HasPrefix(inner, "$") && (strings.HasPrefix(outer, "+") || strings.HasPrefix(outer, "#")) {
		return false
	}
	o, in := strings.Split(outer, "/"), strings.Split(inner, "/")
	for i, ol := range o {
		if ol == "#" {
			return true
		}
		if i >= len(in) {
			return false
		}
		switch il := in[i]; {
		case ol == "+":
			if il == "#" {
				return false
			}
		case il == "+" || il == "#":
			return false
		case ol != il:
			return false
		}
	}
	return len(o) == len(in)
}

// levelNames is every string of up to four levels made of these parts,
// valid and invalid as filters alike.
func levelNames() []string {
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
	return append(names, "")
}

// Every pair of strings built from up to four levels of these parts.
func TestCoversMatchesSplitting(t *testing.T) {
	names := levelNames()
	for _, outer := range names {
		for _, inner := range names {
			if got, want := Covers(outer, inner), coversBySplit(outer, inner); got != want {
				t.Fatalf("Covers(%q, %q) = %v, want %v", outer, inner, got, want)
			}
		}
	}
	t.Logf("%d pairs agree", len(names)*len(names))
}

// For a topic name as inner, Covers is Match.
func TestCoversIsMatchForNames(t *testing.T) {
	names := levelNames()
	for _, filter := range names {
		if ValidateFilter(filter) != nil {
			continue
		}
		for _, name := range names {
			if ValidateName(name) != nil {
				continue
			}
			if c, m := Covers(filter, name), Match(filter, name); c != m {
				t.Fatalf("Covers(%q, %q) = %v, Match = %v", filter, name, c, m)
			}
		}
	}
}

// Covers means what it says: whenever Covers(outer, inner), every name
// inner matches, outer matches too; and when it does not, some name shows
// it (over the names built from the same parts).
func TestCoversIsContainment(t *testing.T) {
	all := levelNames()
	var filters, names []string
	for _, s := range all {
		if ValidateFilter(s) == nil {
			filters = append(filters, s)
		}
		if ValidateName(s) == nil {
			names = append(names, s, s+"/c", s+"/c/d")
		}
	}
	for _, outer := range filters {
		for _, inner := range filters {
			if !Covers(outer, inner) {
				continue
			}
			for _, n := range names {
				if Match(inner, n) && !Match(outer, n) {
					t.Fatalf("Covers(%q, %q) but %q matches only the second", outer, inner, n)
				}
			}
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		outer, inner string
		want         bool
	}{
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/#", "a/+/c", true},
		{"a/#", "a", true},
		{"a/#", "a/#", true},
		{"#", "a/#", true},
		{"#", "$SYS/x", false},
		{"+/#", "$SYS/#", false},
		{"$SYS/#", "$SYS/+", true},
		{"a/b", "a/+", false},
		{"+/+", "#", false},
		{"a/+/#", "a/#", false},
		{"site/+/sensors/#", "site/lab/sensors/temp/1", true},
	} {
		if got := Covers(tc.outer, tc.inner); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.outer, tc.inner, got, tc.want)
		}
	}
}

func TestValidAndMatchDoNotAllocate(t *testing.T) {
	name := "site/lab/sensors/temp/ü/1"
	n := testing.AllocsPerRun(100, func() {
		_ = ValidateName(name)
		_ = ValidateFilter("$share/g/site/+/sensors/#")
		_ = Match("$share/g/site/+/sensors/#", name)
		_ = Covers("site/+/sensors/#", name)
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"a/+/c", "a/b/c"}, {"#", "$SYS/x"}, {"a/#", "a"}, {"+/+", "/"},
		{"$share/g/a/#", "a/b"}, {"$share/g", "a"}, {"a/#/b", "a/x/b"}, {"\xff", "\x00"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		// Validation and matching never panic, valid or not.
		nameErr, filterErr := ValidateName(name), ValidateFilter(filter)
		_ = Match(filter, name)
		_ = Covers(filter, name)
		_ = Covers(name, filter)
		if filterErr != nil || nameErr != nil {
			return
		}
		if c, m := Covers(filter, name), Match(filter, name); c != m {
			// ParseShared strips $share for Match only.
			if _, _, shared := ParseShared(filter); !shared {
				t.Fatalf("Covers(%q, %q) = %v, Match = %v", filter, name, c, m)
			}
		}
		tr := NewTree[int]()
		if _, err := tr.Subscribe(filter, "c", 1); err != nil {
			t.Fatalf("Subscribe(%q): %v after ValidateFilter accepted it", filter, err)
		}
		got := len(tr.Match(name, nil, nil)) == 1
		if want := Match(filter, name); got != want {
			t.Fatalf("tree.Match(%q) with %q = %v, Match = %v", name, filter, got, want)
		}
		if !tr.Unsubscribe(filter, "c") || tr.Len() != 0 || !tr.root.empty() {
			t.Fatalf("Unsubscribe(%q) left the tree non-empty", filter)
		}
	})
}

func BenchmarkCovers(b *testing.B) {
	for b.Loop() {
		Covers("site/+/sensors/#", "site/lab/sensors/temp/1")
	}
}

func BenchmarkCoversBySplit(b *testing.B) {
	for b.Loop() {
		coversBySplit("site/+/sensors/#", "site/lab/sensors/temp/1")
	}
}

func BenchmarkValidateName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = ValidateName("site/lab/sensors/temp/1")
	}
}
