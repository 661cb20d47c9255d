package ui

import (
	"strings"
	"testing"
)

func TestDecideColor(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	cases := []struct {
		name string
		tty  bool
		mode ColorMode
		env  map[string]string
		want bool
	}{
		{"tty auto", true, ColorAuto, nil, true},
		{"pipe auto", false, ColorAuto, nil, false},
		{"pipe always", false, ColorAlways, nil, true},
		{"tty never", true, ColorNever, nil, false},
		{"tty NO_COLOR", true, ColorAuto, map[string]string{"NO_COLOR": "1"}, false},
		{"tty dumb", true, ColorAuto, map[string]string{"TERM": "dumb"}, false},
		{"always beats NO_COLOR", false, ColorAlways, map[string]string{"NO_COLOR": "1"}, true},
	}
	for _, c := range cases {
		if got := decideColor(c.tty, c.mode, env(c.env)); got != c.want {
			t.Errorf("%s: got %v want %v", c.name, got, c.want)
		}
	}
}

func TestParseColorMode(t *testing.T) {
	for _, ok := range []string{"auto", "ALWAYS", "never", ""} {
		if _, err := ParseColorMode(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	if _, err := ParseColorMode("sometimes"); err == nil || !strings.Contains(err.Error(), "auto, always or never") {
		t.Errorf("want helpful error, got %v", err)
	}
}

func TestMessagesArePlainWhenNotATerminal(t *testing.T) {
	s, out, errb := Test(nil)
	s.Errorf("could not connect to %s", "localhost:1883")
	s.Hintf("is a broker running?")
	s.Infof("connected")
	s.Quiet = true
	s.Infof("hidden")
	s.Warnf("shown")
	want := "mqtk: could not connect to localhost:1883\nhint: is a broker running?\nmqtk: connected\nmqtk: warning: shown\n"
	if errb.String() != want {
		t.Errorf("stderr:\n%q\nwant\n%q", errb.String(), want)
	}
	if out.Len() != 0 {
		t.Errorf("stdout must stay empty, got %q", out.String())
	}
}

func TestStyledWhenForced(t *testing.T) {
	st := NewStream(&strings.Builder{}, false, ColorAlways, func(string) string { return "" })
	if got := st.Style().Bold(true).Render("x"); !strings.Contains(got, "\x1b[") {
		t.Errorf("forced colour should emit escapes, got %q", got)
	}
	plain := NewStream(&strings.Builder{}, true, ColorNever, func(string) string { return "" })
	if got := plain.Style().Bold(true).Render("x"); got != "x" {
		t.Errorf("never should be plain, got %q", got)
	}
}
