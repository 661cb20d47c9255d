package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mqtk/mqtk/internal/ui"
)

// Flag mistakes exit 2 with a message that names the cause and a hint or
// fix, never a Go parser's text.
func TestFlagErrorsExplainThemselves(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
		not  string
	}{
		{[]string{"pub", "-h"}, []string{"'h' in -h", "hint: -h is the broker host", "--help"}, ""},
		{[]string{"sub", "-t", "a", "-C", "abc"}, []string{`invalid argument "abc" for "-C, --count" flag: not a whole number` + "\nhint: give a whole number of messages, such as -C 10\nhint: run 'mqtk sub --help'"}, "strconv"},
		{[]string{"pub", "-t", "a", "-m", "x", "--will-qos", "abc"}, []string{`invalid argument "abc" for "--will-qos" flag: not a number`}, "strconv"},
		{[]string{"pub", "-t", "a", "-m", "x", "--connect-timeout", "zz"}, []string{"not a duration\nhint: write e.g. 500ms, 10s, 2m\nhint: run 'mqtk pub --help'"}, "time: invalid"},
		{[]string{"pub", "-t", "a", "-m", "x", "-p", "0"}, []string{"-p 0 is not a port\nhint: give 1..65535, or leave -p out for the default (1883, 8883 with TLS)"}, ""},
		{[]string{"pub", "-t", "a", "-m", "x", "-k", "70000"}, []string{"keepalive of 70000 seconds is out of range"}, ""},
		{[]string{"pub", "-t", "a", "-m", "x", "-L", "localhost:1883"}, []string{"has no scheme", "mqtt://localhost:1883"}, "unknown URL scheme"},
	} {
		code, _, stderr := runMqtk(t, "", tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: stderr lacks %q:\n%s", tc.args, w, stderr)
			}
		}
		if tc.not != "" && strings.Contains(stderr, tc.not) {
			t.Errorf("%v: stderr shows %q:\n%s", tc.args, tc.not, stderr)
		}
	}
}

// version --json is one object with the fields scripts read; --version
// prints the same version.
func TestVersionOutputs(t *testing.T) {
	code, out, stderr := runMqtk(t, "", "version", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var v struct{ Version, Commit, Date, Go string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("version --json = %q (%v)", out, err)
	}
	code, out, _ = runMqtk(t, "", "--version")
	if code != 0 || !strings.Contains(out, v.Version) {
		t.Fatalf("--version = %q (exit %d), want version %q", out, code, v.Version)
	}
}

// --color and MQTK_COLOR decide colour for the streams, whatever the
// terminal; never wins over MQTK_COLOR, as a flag over the environment.
func TestColorFlagAndEnvironment(t *testing.T) {
	run := func(env map[string]string, args ...string) string {
		t.Helper()
		streams, _, errb := ui.Test(nil)
		execute(context.Background(), streams, args, func(k string) string { return env[k] })
		return errb.String()
	}
	bad := []string{"pub", "-t", "a", "-m", "x", "-p", "0"}
	if s := run(nil, append([]string{"--color", "always"}, bad...)...); !strings.Contains(s, "\x1b[") {
		t.Errorf("--color always: no escape sequence in %q", s)
	}
	if s := run(map[string]string{"MQTK_COLOR": "always"}, bad...); !strings.Contains(s, "\x1b[") {
		t.Errorf("MQTK_COLOR=always: no escape sequence in %q", s)
	}
	if s := run(map[string]string{"MQTK_COLOR": "always"}, append([]string{"--color", "never"}, bad...)...); strings.Contains(s, "\x1b[") {
		t.Errorf("--color never under MQTK_COLOR=always: escape sequence in %q", s)
	}
	if s := run(nil, bad...); strings.Contains(s, "\x1b[") {
		t.Errorf("default, not a terminal: escape sequence in %q", s)
	}
}
