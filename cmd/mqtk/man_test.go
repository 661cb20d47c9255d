package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `mqtk man DIR`, which packaging runs, writes a page for every command,
// and troff reads each without a warning.
func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man")
	code, _, stderr := runMqtk(t, "", "man", dir)
	if code != 0 {
		t.Fatalf("mqtk man: exit %d\n%s", code, stderr)
	}
	for _, name := range []string{"mqtk", "mqtk-pub", "mqtk-sub", "mqtk-rr", "mqtk-bench", "mqtk-bench-merge", "mqtk-broker",
		"mqtk-broker-passwd", "mqtk-tlsgen", "mqtk-tlsgen-verify", "mqtk-version"} {
		if _, err := os.Stat(filepath.Join(dir, name+".1")); err != nil {
			t.Errorf("no page for %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "mqtk-man.1")); err == nil {
		t.Errorf("the hidden man command got a page of its own")
	}
	page, err := os.ReadFile(filepath.Join(dir, "mqtk-pub.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".TH MQTK-PUB 1", ".SH OPTIONS", `\fB\-t\fP, \fB\-\-topic\fP`, `\fB\-\-cafile\fP`, ".SH EXAMPLES", `\fBmqtk\fP(1)`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("mqtk-pub.1 lacks %q", want)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff is not installed (Debian package groff-base; .ci/run installs it): pages written but not rendered")
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	out, err := exec.Command(groff, append([]string{"-man", "-Tutf8", "-ww", "-z"}, pages...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("groff: %v\n%s", err, out)
	}
}
