package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/ui"
	"github.com/mqtk/mqtk/pub"
)

// parsePub runs `pub ARGS` with a runF that captures the Options.
func parsePub(t *testing.T, args ...string) (*pub.Options, error) {
	t.Helper()
	streams, _, _ := ui.Test(nil)
	a := &app{io: streams, getenv: func(string) string { return "" }}
	var got *pub.Options
	root := &cobra.Command{Use: "mqtk", SilenceErrors: true, SilenceUsage: true}
	root.PersistentFlags().Bool("help", false, "help") // -h is the host, as on the real root
	root.AddCommand(newPubCmd(a, func(o *pub.Options) error { got = o; return nil }))
	root.SetArgs(withProperties(root, append([]string{"pub"}, args...)))
	err := root.Execute()
	return got, err
}

func TestPubFlagsFillOptions(t *testing.T) {
	o, err := parsePub(t, "-h", "127.0.0.1", "-p", "1999", "-t", "a/b", "-m", "hi", "-q", "2", "-r",
		"--repeat", "3", "--repeat-delay", "0.5", "--rate", "120/m", "-M", "7",
		"--user-property", "k=v", "--user-property", "k=w=x", "--correlation-data", "hex:0a0b",
		"--message-expiry", "2m", "--payload-format-indicator", "1", "--content-type", "text/plain",
		"--response-topic", "re/ply", "--topic-alias", "3", "--quiet", "--encoding", "hex")
	if err != nil {
		t.Fatal(err)
	}
	if o.Topic != "a/b" || o.Message != "hi" || o.Source != source.Message || o.QoS != 2 || !o.Retain ||
		o.Repeat != 3 || o.RepeatDelay != 500*time.Millisecond || o.Rate != 2 || o.MaxInflight != 7 || !o.Quiet || o.Encoding != "hex" {
		t.Errorf("options: %+v", o)
	}
	p := o.Props
	if fmt.Sprint(p.UserProperties) != "[{k v} {k w=x}]" || !bytes.Equal(p.CorrelationData, []byte{0x0a, 0x0b}) ||
		*p.MessageExpiry != 120 || *p.PayloadFormat != 1 || p.ContentType != "text/plain" || p.ResponseTopic != "re/ply" || p.TopicAlias != 3 {
		t.Errorf("properties: %+v", p)
	}
	if o.Conn.Host != "127.0.0.1" || o.Conn.Port != 1999 || o.Dial == nil {
		t.Errorf("config: %+v", o.Conn)
	}

	o, err = parsePub(t, "-L", "mqtt://127.0.0.1:1884/from/url", "-n")
	if err != nil || o.Topic != "from/url" || o.Source != source.Null {
		t.Errorf("-L topic: %v %+v", err, o)
	}
	o, err = parsePub(t, "--replay", "x.jsonl", "--speed", "max")
	if err != nil || o.Source != source.Replay || o.File != "x.jsonl" || o.Speed != 0 {
		t.Errorf("--replay: %v %+v", err, o)
	}
	o, err = parsePub(t, "--replay", "x.jsonl", "--speed", "2x")
	if err != nil || o.Speed != 2 {
		t.Errorf("--speed 2x: %v %+v", err, o)
	}
	o, err = parsePub(t, "-l", "--topic-from-line", "--line-format", "text")
	if err != nil || o.Source != source.Lines || !o.TopicFromLine {
		t.Errorf("-l --topic-from-line: %v %+v", err, o)
	}
	o, err = parsePub(t, "-t", "x", "--correlation-data", "base64:AAE=", "-m", "")
	if err != nil || !bytes.Equal(o.Props.CorrelationData, []byte{0, 1}) || o.Source != source.Message {
		t.Errorf("base64 correlation data / empty -m: %v %+v", err, o)
	}
}

// runMqtk runs the whole command tree as the binary would.
func runMqtk(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	streams, out, errb := ui.Test(strings.NewReader(stdin))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = execute(ctx, streams, args, func(string) string { return "" })
	return code, out.String(), errb.String()
}

func TestPubUsageErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "a", "-m", "x", "-n"}, "more than one payload source (-m, -n)"},
		{[]string{"-t", "a", "-m", "x", "-q", "3"}, "-q 3 out of range"},
		{[]string{"-t", "a", "-m", "x", "--repeat", "2", "--repeat-delay", "1e300"}, "--repeat-delay 1e300 is too long"},
		{[]string{"-t", "a", "-m", "x", "-k", "99999999999999"}, "--keepalive 99999999999999 is too long"},
		{[]string{"-t", "a/#", "-m", "x"}, "wildcards"},
		{[]string{"-t", "", "-m", "x"}, "no topic given"},
		{[]string{"-m", "x"}, "no topic given"},
		{[]string{"-t", "a"}, "no payload given"},
		{[]string{"-t", "a", "-f", "/nonexistent/file"}, "cannot read -f /nonexistent/file"},
		{[]string{"-t", "a", "-m", "x", "-V", "311", "--content-type", "c"}, "--content-type is an MQTT 5 property"},
		{[]string{"-t", "a", "-m", "x", "-V", "31", "--user-property", "a=b"}, "--user-property is an MQTT 5 property"},
		{[]string{"-t", "a", "-m", "x", "--user-property", "novalue"}, "key=value"},
		{[]string{"-t", "a", "-m", "zz", "--encoding", "hex"}, "not valid hex"},
		{[]string{"-t", "a", "-m", "x", "--rate", "fast"}, "--rate"},
		{[]string{"--replay", "x", "--speed", "-1"}, "--speed"},
		{[]string{"-t", "a", "-m", "x", "--topic-alias", "0"}, "--topic-alias 0 out of range"},
	} {
		// Port 1 has no broker: none of these may get as far as dialling.
		code, _, stderr := runMqtk(t, "", append([]string{"pub", "-h", "127.0.0.1", "-p", "1"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("pub %q: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestPubEndToEndWithMosquitto(t *testing.T) {
	_, subBin := mosquittotest.RequireClients(t)
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("topic readwrite ok/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := mosquittotest.Start(t, mosquittotest.Options{ACLFile: acl})
	port := fmt.Sprint(b.Port())

	// A retained message is there for a subscriber that comes later, so no
	// timing is involved in reading it back.
	code, _, stderr := runMqtk(t, "", "pub", "-h", "127.0.0.1", "-p", port, "-t", "ok/one", "-m", "a b\tc", "-q", "1", "-r")
	if code != 0 {
		t.Fatalf("pub exit %d: %s", code, stderr)
	}
	out, err := exec.Command(subBin, "-h", "127.0.0.1", "-p", port, "-t", "ok/one", "-q", "1", "-C", "1", "-W", "10", "-F", "%t|%q|%r|%p").CombinedOutput()
	if err != nil || string(out) != "ok/one|1|1|a b\tc\n" {
		t.Fatalf("mosquitto_sub read %q, %v", out, err)
	}

	// The broker refuses a publish outside the ACL: exit 6, reason named.
	code, _, stderr = runMqtk(t, "", "pub", "-h", "127.0.0.1", "-p", port, "-t", "denied/x", "-m", "x", "-q", "1")
	if code != 6 || !strings.Contains(stderr, "not authorized") {
		t.Fatalf("denied publish: exit %d, stderr %q; want 6 naming 'not authorized'", code, stderr)
	}

	// Line mode: a bad line is counted as failed and makes the exit non-zero,
	// the good lines still go out.
	code, _, stderr = runMqtk(t, "ok/a\t1\nno tab here\nok/b\t2\n", "pub", "-h", "127.0.0.1", "-p", port, "-l", "--topic-from-line", "-q", "1")
	if code == 0 || !strings.Contains(stderr, "sent 3, acked 2, failed 1") || !strings.Contains(stderr, "line 2: no TAB") {
		t.Fatalf("line mode with a bad line: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runMqtk(t, "x\n", "pub", "-h", "127.0.0.1", "-p", port, "-l", "-t", "ok/q", "--quiet")
	if code != 0 || stderr != "" {
		t.Fatalf("--quiet: exit %d, stderr %q", code, stderr)
	}
}

// TestPubToOwnBroker publishes every payload source to mqtk's own broker,
// with both protocol versions, and reads the retained results back with
// mosquitto_sub byte for byte.
func TestPubToOwnBroker(t *testing.T) {
	_, subBin := mosquittotest.RequireClients(t)
	b, err := broker.New(broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}, AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	url := b.Listeners()[0].URL()
	blob := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(blob, []byte{0, 1, 2, 0xfe, 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, v := range []string{"5", "311"} {
		for _, c := range []struct {
			stdin string
			args  []string
			want  []string
		}{
			{"", []string{"-t", "own/" + v + "/m", "-m", "text {{x}}", "-q", "1"}, []string{"own/" + v + "/m 74657874207b7b787d7d"}},
			{"", []string{"-t", "own/" + v + "/f", "-f", blob, "-q", "2"}, []string{"own/" + v + "/f 000102feff"}},
			{"whole\nstdin", []string{"-t", "own/" + v + "/s", "-s"}, []string{"own/" + v + "/s 77686f6c650a737464696e"}},
			{"own/" + v + "/l1\ta\nown/" + v + "/l2\tb\n", []string{"-l", "--topic-from-line", "-q", "1"}, []string{"own/" + v + "/l1 61", "own/" + v + "/l2 62"}},
		} {
			args := append([]string{"pub", "-L", url, "-V", v, "-r"}, c.args...)
			if code, _, stderr := runMqtk(t, c.stdin, args...); code != 0 {
				t.Fatalf("mqtk %q: exit %d\n%s", args, code, stderr)
			}
			want = append(want, c.want...)
		}
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(url, "mqtt://"), ":")
	out, err := exec.Command(subBin, "-h", host, "-p", port, "-t", "own/#", "-C", fmt.Sprint(len(want)), "-W", "10", "-F", "%t %x").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, out)
	}
	// Retained messages for a wildcard come in no particular order.
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("read back\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// mosquitto_pub command lines with the long forms and connection options
// mqtk used to refuse: each works unchanged with mqtk pub, against the
// same mosquitto, and delivers the same message.
func TestPubMosquittoCommandLinesRunUnchanged(t *testing.T) {
	mpub, _ := mosquittotest.RequireClients(t)
	mosq := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{{}, {Unix: true}}})
	sock := mosq.Socket[1]
	port := fmt.Sprint(mosq.Port())
	for i, extra := range [][]string{
		{"--pw", "secret", "-u", "u"},
		{"--disable-clean-session", "-i", "dc-%s"},
		{"-x", "∞", "-c", "-i", "inf-%s"},
		{"--nodelay"},
		{"-A", "127.0.0.1"},
		{"--tls-alpn", "mqtt"},
		{"--unix", sock},
	} {
		for _, tool := range []string{"mosquitto_pub", "mqtk"} {
			topic := fmt.Sprintf("compat/%d/%s", i, tool)
			args := []string{"-p", port, "-V", "5", "-t", topic, "-m", "same", "-r", "-q", "1"}
			for _, a := range extra {
				args = append(args, strings.ReplaceAll(a, "%s", tool))
			}
			var code int
			var errb string
			if tool == "mqtk" {
				code, _, errb = runMqtk(t, "", append([]string{"pub"}, args...)...)
			} else {
				out, err := exec.Command(mpub, args...).CombinedOutput()
				code, errb = 0, string(out)
				if err != nil {
					code = 1
				}
			}
			if code != 0 {
				t.Errorf("%s %v: exit %d\n%s", tool, extra, code, errb)
			}
		}
		code, out, errb := runMqtk(t, "", "sub", "-p", port, "-t", fmt.Sprintf("compat/%d/+", i), "--retained-only", "-v")
		if code != 0 || sortLines(out) != fmt.Sprintf("compat/%d/mosquitto_pub same\ncompat/%d/mqtk same\n", i, i) {
			t.Errorf("%v: retained messages %q (exit %d)\n%s", extra, out, code, errb)
		}
	}
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
