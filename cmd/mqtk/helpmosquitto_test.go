package main

import (
	"strings"
	"testing"

	"github.com/mqtk/mqtk/internal/ui"
)

// Every option of mosquitto's clients is an mqtk flag of the command that
// stands in for the client: removing or renaming a flag fails here. A
// refused option is a hidden flag, so that mqtk explains instead of
// saying "unknown flag"; an accepted one is listed in --help.
func TestEveryMosquittoOptionHasAnMqtkFlag(t *testing.T) {
	streams, _, _ := ui.Test(strings.NewReader(""))
	a := &app{io: streams, getenv: func(string) string { return "" }}
	root := newRootCmd(a, nil)
	cmds := mosquittoCommands(a)
	seen := map[string]bool{}
	for _, o := range mosquittoOptions {
		for _, sp := range o.spellings {
			if seen[sp] {
				t.Errorf("%s is in the table twice", sp)
			}
			seen[sp] = true
		}
		if o.since != "2.0" && o.since != "2.1" {
			t.Errorf("%s: since %q", o.spellings[0], o.since)
		}
		for _, m := range mapMosquittoOption(o, cmds, root.PersistentFlags()) {
			switch {
			case m.err != "":
				t.Errorf("%s", m.err)
			case o.refused != "" && !m.flag.Hidden:
				t.Errorf("mqtk %s: %s is refused but its flag --%s shows in --help", m.client, o.spellings[0], m.flag.Name)
			case o.refused == "" && m.flag.Hidden:
				t.Errorf("mqtk %s: %s is accepted but its flag --%s is hidden", m.client, o.spellings[0], m.flag.Name)
			}
		}
	}
	// The table's own spot checks: options every client has.
	for _, sp := range []string{"-A", "--pw", "--disable-clean-session", "-D", "--proxy", "-F", "-e", "--retain-handling", "-w", "--tls-keylog", "-o"} {
		if !seen[sp] {
			t.Errorf("the table lacks %s", sp)
		}
	}
}

// A refused option exits 2 with its reason, before any connection.
func TestRefusedMosquittoOptionsExit2WithTheReason(t *testing.T) {
	for _, o := range mosquittoOptions {
		if o.refused == "" {
			continue
		}
		for _, client := range strings.Fields(o.clients) {
			args := []string{client, "-h", "127.0.0.1", "-p", "1", "-t", "a", "-m", "x", o.spellings[0]}
			if client == "sub" {
				args = []string{client, "-h", "127.0.0.1", "-p", "1", "-t", "a", o.spellings[0]}
			}
			if client == "rr" {
				args = append(args[:1], append([]string{"-e", "b"}, args[1:]...)...)
			}
			switch o.arg {
			case "":
			case "pem|engine":
				args = append(args, "engine")
			default:
				args = append(args, "00")
			}
			code, _, stderr := runMqtk(t, "", args...)
			if code != 2 || strings.Contains(stderr, "unknown") || !strings.Contains(stderr, "not supported") {
				t.Errorf("mqtk %q: exit %d, stderr %q; want 2 and the reason", args, code, stderr)
			}
		}
	}
}

func TestHelpMosquittoListsEveryOption(t *testing.T) {
	code, out, stderr := runMqtk(t, "", "help", "mosquitto")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, o := range mosquittoOptions {
		head := strings.Join(o.spellings, ", ")
		i := strings.Index(out, "\n"+head)
		if i < 0 {
			t.Errorf("%s is not listed", head)
			continue
		}
		entry, _, _ := strings.Cut(out[i+1:], "\n-")
		switch {
		case o.refused != "" && !strings.Contains(entry, "refused (exit 2): "+o.refused):
			t.Errorf("%s: no refusal in %q", head, entry)
		case o.refused == "" && !strings.Contains(entry, "mqtk"):
			t.Errorf("%s: no mqtk flag in %q", head, entry)
		}
	}
	for _, want := range []string{"-P, --pw PASSWORD  (pub sub rr)\n    mqtk: -P, --password", "-w, --watch  (sub; 2.1)\n    mqtk: -w, --watch",
		"-e TOPIC  (rr)\n    mqtk: -e, --response-topic"} {
		if !strings.Contains(out, want) {
			t.Errorf("help mosquitto lacks %q", want)
		}
	}
	if strings.Contains(out, "(none)") {
		t.Errorf("an option maps to no flag:\n%s", out)
	}
}
