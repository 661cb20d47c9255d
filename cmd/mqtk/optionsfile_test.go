package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqtk/mqtk/broker"
)

func writeOptions(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "opts")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// -o reads mosquitto 2.1's options file: one option per line as on the
// command line; the command line wins, and repeatable options add up
// (the file's first).
func TestOptionsFile(t *testing.T) {
	_, own := ownBroker(t, broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}})
	file := writeOptions(t, "# connection for the test broker\r\n"+
		"-h 127.0.0.1\n"+
		"--port "+portOf(own["tcp"])+"\n"+
		"\n"+
		"-p 1\n"+ // the next line wins, as a repeated flag does on the command line
		"--port="+portOf(own["tcp"])+"\n"+
		"-q 1\n"+
		"-r\n"+
		"-m from the file, spaces kept\n")
	if code, _, errb := runMqtk(t, "", "pub", "-o", file, "-t", "of/a"); code != 0 {
		t.Fatalf("pub -o: exit %d\n%s", code, errb)
	}
	// The command line wins over the file: -m here, and -p names a port
	// with nothing on it when the file's would work.
	code, _, errb := runMqtk(t, "", "pub", "-o", file, "-t", "of/a", "-p", "1")
	if code != 3 {
		t.Errorf("-p on the command line over the file's: exit %d, want 3\n%s", code, errb)
	}
	if code, _, errb := runMqtk(t, "", "pub", "-o", file, "-t", "of/b", "-m", "from the command line", "-r"); code != 0 {
		t.Fatalf("pub -o with -m: exit %d\n%s", code, errb)
	}
	// sub: -t in the file and on the command line subscribe to both.
	subFile := writeOptions(t, "-h 127.0.0.1\n-p "+portOf(own["tcp"])+"\n-t of/a\n-v\n")
	code, out, errb := runMqtk(t, "", "sub", "-o", subFile, "-t", "of/b", "-C", "2", "-W", "5")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(out, "of/a from the file, spaces kept\n") || !strings.Contains(out, "of/b from the command line\n") {
		t.Errorf("sub -o: exit %d, stdout %q\n%s", code, out, errb)
	}
	for _, tc := range []struct{ text, want string }{
		{"-h 127.0.0.1\n--frobnicate 3\n", ":2: unknown option --frobnicate"},
		{"-p\n", ":1: -p needs a value on the same line"},
		{"host 127.0.0.1\n", `:1: "host 127.0.0.1" is not an option`},
		{"-r yes-please\n", ":1: -r takes no value"},
		{"-o other\n", "-o cannot name another options file"},
		{"-q 7\n-t x\n-m y\n", "-q 7 out of range"},
		{"--psk 00\n", "TLS-PSK"},
	} {
		code, _, errb := runMqtk(t, "", "pub", "-o", writeOptions(t, tc.text), "-t", "of/x", "-m", "y")
		if code != 2 || !strings.Contains(errb, tc.want) {
			t.Errorf("options %q: exit %d, want 2 with %q\n%s", tc.text, code, tc.want, errb)
		}
	}
	if code, _, errb := runMqtk(t, "", "pub", "-o", filepath.Join(t.TempDir(), "missing"), "-t", "x", "-m", "y"); code != 2 || !strings.Contains(errb, "read -o options file") {
		t.Errorf("missing options file: exit %d\n%s", code, errb)
	}
	// bench reads its own flags before it builds the connection: the
	// file is applied before that (a PreRunE), so its values count.
	code, _, errb = runMqtk(t, "", "bench", "pub", "-o", writeOptions(t, "--qos 5\n"))
	if code != 2 || !strings.Contains(errb, "-q/--qos 5 out of range") {
		t.Errorf("bench pub -o with --qos 5: exit %d, want 2\n%s", code, errb)
	}
}
