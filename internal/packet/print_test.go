package packet

import "testing"

func TestPreview(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
		more  bool
	}{
		{"hello", 64, "hello", false},
		{"", 64, "", false},
		{"a\tb\r\n", 64, `a\tb\r\n`, false},
		{"\x1b[31mred", 64, `\x1b[31mred`, false},
		{"héllo wörld", 64, "héllo wörld", false},
		{"\xc3\x28", 64, `\xc3(`, false},
		{"abcdef", 3, "abc", true},
		{"aé", 2, "a", true}, // never cut a character in half
		{`back\slash "q"`, 64, `back\\slash \"q\"`, false},
		{"\u0085next-line", 64, `\x85next-line`, false},
	} {
		got, more := Preview([]byte(tc.in), tc.limit)
		if got != tc.want || more != tc.more {
			t.Errorf("Preview(%q, %d) = %q, %v; want %q, %v", tc.in, tc.limit, got, more, tc.want, tc.more)
		}
	}
}

func TestQuoteIfNeeded(t *testing.T) {
	for in, want := range map[string]string{
		"a/b":       "a/b",
		"":          `""`,
		"a b":       `"a b"`,
		"k=v":       `"k=v"`,
		"x\x00y":    `"x\x00y"`,
		"sensors/+": "sensors/+",
	} {
		if got := quoteIfNeeded(in); got != want {
			t.Errorf("quoteIfNeeded(%q) = %s, want %s", in, got, want)
		}
	}
}
