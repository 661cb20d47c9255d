package clierr

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestExitCode(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("plain"), 1},
		{&Error{Kind: KindOther, Err: errors.New("x")}, 1},
		{Usagef("bad %s", "flag"), 2},
		{&Error{Kind: KindNetwork, Err: errors.New("x")}, 3},
		{&Error{Kind: KindTLS, Err: errors.New("x")}, 4},
		{&Error{Kind: KindRefused, Err: errors.New("x")}, 5},
		{&Error{Kind: KindRejected, Err: errors.New("x")}, 6},
		{&Error{Kind: KindUnmet, Err: errors.New("x")}, 7},
		{&Error{Kind: KindTimeout, Err: errors.New("x")}, 27},
		{&Error{Kind: KindInterrupted, Err: errors.New("x")}, 130},
		// The Kind is found through fmt.Errorf's %w wrapping.
		{fmt.Errorf("run: %w", &Error{Kind: KindTLS, Err: errors.New("x")}), 4},
		// A Kind with no row in the table exits like any other failure.
		{&Error{Kind: Kind(99), Err: errors.New("x")}, 1},
	}
	for _, c := range cases {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// Every Kind has its own row, so no two causes share an exit code.
func TestExitCodesDistinct(t *testing.T) {
	seen := map[int]Kind{}
	for k := KindOther; k <= KindInterrupted; k++ {
		code := ExitCode(&Error{Kind: k, Err: errors.New("x")})
		if prev, ok := seen[code]; ok {
			t.Errorf("kinds %d and %d both exit %d", prev, k, code)
		}
		seen[code] = k
	}
}

func TestWriteExitCodes(t *testing.T) {
	var b strings.Builder
	if err := WriteExitCodes(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "mqtk exit codes:\n\n    0  success\n") {
		t.Errorf("table starts %q", out[:min(len(out), 40)])
	}
	for k := KindOther; k <= KindInterrupted; k++ {
		line := fmt.Sprintf("\n  %3d  ", ExitCode(&Error{Kind: k, Err: errors.New("x")}))
		if !strings.Contains(out, line) {
			t.Errorf("table has no row for kind %d (%q):\n%s", k, line, out)
		}
	}
}

func TestErrorText(t *testing.T) {
	cause := errors.New("connection refused")
	cases := []struct {
		e    *Error
		want string
	}{
		{&Error{Op: "connect to localhost:1883", Err: cause}, "connect to localhost:1883: connection refused"},
		{&Error{Err: cause}, "connection refused"},
		{&Error{Op: "publish"}, "publish"},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	if e := (&Error{Op: "x", Err: cause}); !errors.Is(e, cause) {
		t.Error("Unwrap does not reach the cause")
	}
}

func TestKindAndHintsThroughChain(t *testing.T) {
	inner := &Error{Kind: KindTLS, Err: errors.New("bad certificate"), Hints: []string{"inner hint"}}
	outer := &Error{Kind: KindNetwork, Op: "connect", Err: fmt.Errorf("dial: %w", inner), Hints: []string{"outer hint"}}
	err := fmt.Errorf("pub: %w", outer)
	if got := KindOf(err); got != KindNetwork {
		t.Errorf("KindOf = %d, want the outermost kind %d", got, KindNetwork)
	}
	if got := HintsOf(err); !slices.Equal(got, []string{"outer hint", "inner hint"}) {
		t.Errorf("HintsOf = %q, want outer then inner", got)
	}
	if got := KindOf(errors.New("plain")); got != KindOther {
		t.Errorf("KindOf(plain) = %d, want KindOther", got)
	}
	if HintsOf(nil) != nil {
		t.Error("HintsOf(nil) is not empty")
	}
	u := Usagef("port %d out of range", 70000)
	if u.Kind != KindUsage || u.Error() != "port 70000 out of range" {
		t.Errorf("Usagef = %v (kind %d)", u, u.Kind)
	}
}

func TestHintf(t *testing.T) {
	err := Usagef("-q %d out of range", 5).Hintf("use %d, %d or %d", 0, 1, 2)
	if err.Error() != "-q 5 out of range" {
		t.Errorf("message = %q: the hint must not be in it", err.Error())
	}
	if got := HintsOf(fmt.Errorf("pub: %w", err)); !slices.Equal(got, []string{"use 0, 1 or 2"}) {
		t.Errorf("HintsOf = %q", got)
	}
	if KindOf(err) != KindUsage || ExitCode(err) != 2 {
		t.Errorf("kind %d, exit %d: Hintf changed the kind", KindOf(err), ExitCode(err))
	}
}
