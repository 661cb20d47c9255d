package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/testpki"
	"github.com/mqtk/mqtk/internal/ui"
)

// runMqtk runs the command tree in-process and returns the exit code and
// stderr.
func runConnCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	streams, _, errb := ui.Test(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := execute(ctx, streams, args, func(string) string { return "" })
	return code, errb.String()
}

func wantConnExit(t *testing.T, want int, fragments []string, args ...string) {
	t.Helper()
	code, stderr := runConnCmd(t, args...)
	if code != want {
		t.Errorf("mqtk %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(stderr, f) {
			t.Errorf("mqtk %s: stderr lacks %q:\n%s", strings.Join(args, " "), f, stderr)
		}
	}
}

// TestConnectErrorExitCodes provokes each connection error class for real
// and checks the exit code from the table and that stderr names the cause.
func TestConnectErrorExitCodes(t *testing.T) {
	pki := testpki.New(t)
	caFile := pki.CAFile
	srv, srvKey := pki.Issue(t, "server", false, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "localhost", "127.0.0.1")
	wrong, wrongKey := pki.Issue(t, "wrong", false, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "broker.example")
	old, oldKey := pki.Issue(t, "old", false, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "127.0.0.1")
	cli, cliKey := pki.Issue(t, "client", true, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "client")

	pwfile := mosquittotest.PasswordFile(t, "alice", "s3cret")
	b := mosquittotest.Start(t, mosquittotest.Options{PasswordFile: pwfile, Listeners: []mosquittotest.Listener{
		{},
		{TLS: &mosquittotest.TLS{CAFile: caFile, CertFile: srv, KeyFile: srvKey}},
		{TLS: &mosquittotest.TLS{CAFile: caFile, CertFile: srv, KeyFile: srvKey, RequireCertificate: true}},
		{TLS: &mosquittotest.TLS{CAFile: caFile, CertFile: wrong, KeyFile: wrongKey}},
		{TLS: &mosquittotest.TLS{CAFile: caFile, CertFile: old, KeyFile: oldKey}},
	}})
	p := func(i int) string { return fmt.Sprint(b.Ports[i]) }
	auth := []string{"-u", "alice", "-P", "s3cret"}
	pub := func(extra ...string) []string {
		return append(append([]string{"pub", "-h", "127.0.0.1", "-t", "x", "-m", "y"}, auth...), extra...)
	}

	for _, v := range []string{"5", "311", "31"} {
		t.Run("v"+v, func(t *testing.T) {
			// Success paths, so the failures below are about the cause named.
			wantConnExit(t, 0, nil, pub("-V", v, "-p", p(0))...)
			wantConnExit(t, 0, nil, pub("-V", v, "-p", p(1), "--cafile", caFile)...)
			wantConnExit(t, 0, nil, pub("-V", v, "-p", p(2), "--cafile", caFile, "--cert", cli, "--key", cliKey)...)
			wantConnExit(t, 0, nil, pub("-V", v, "-p", p(1), "--insecure")...)

			// 5: CONNACK refusal, with the reason named.
			wantConnExit(t, 5, []string{"refused the connection", "hint: "},
				"pub", "-V", v, "-h", "127.0.0.1", "-p", p(0), "-u", "alice", "-P", "wrong", "-t", "x", "-m", "y")
			// 4: TLS verification and handshake failures.
			wantConnExit(t, 4, []string{"unknown authority", "hint: give the CA certificate"}, pub("-V", v, "-L", "mqtts://127.0.0.1:"+p(1))...)
			wantConnExit(t, 4, []string{`the server certificate is for "broker.example", not "127.0.0.1"`, "hint: connect with -h broker.example or reissue with mqtk tlsgen server 127.0.0.1"},
				pub("-V", v, "-p", p(3), "--cafile", caFile)...)
			wantConnExit(t, 4, []string{"the server certificate expired: valid from"}, pub("-V", v, "-p", p(4), "--cafile", caFile)...)
			wantConnExit(t, 4, []string{"requires a client certificate", "hint: give a client certificate and its key with --cert and --key"},
				pub("-V", v, "-p", p(2), "--cafile", caFile)...)
			wantConnExit(t, 4, []string{"the server did not answer TLS: is port " + p(0) + " plain MQTT?"}, pub("-V", v, "-p", p(0), "--cafile", caFile)...)
			// A plain client on the TLS port.
			wantConnExit(t, 4, []string{"port " + p(1) + " expects TLS", "hint: add --cafile", "mqtts://"}, pub("-V", v, "-p", p(1))...)
		})
	}

	t.Run("timeout", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			var conns []net.Conn
			for {
				c, err := l.Accept()
				if err != nil {
					break
				}
				conns = append(conns, c)
			}
			for _, c := range conns {
				c.Close()
			}
		}()
		port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
		wantConnExit(t, 3, []string{"timed out after 300ms waiting for CONNACK"},
			"pub", "-h", "127.0.0.1", "-p", port, "--connect-timeout", "300ms", "-t", "x", "-m", "y")
		l.Close()
		<-done
	})
}

// Against a broker without MQTT 5 (a 3.1.1-only stand-in in front of
// mosquitto): the default -V 5 exits 5 with -V 311 as the hint, not with
// "the connection was closed: EOF" and exit 3; -V auto falls back and
// works; MQTT 5 features asked for then stop it instead of being dropped.
func TestBrokerWithoutMQTT5(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{})
	port := fmt.Sprint(mosquittotest.Only311(t, b.Addr(0)))
	conn := func(args ...string) []string {
		return append([]string{args[0], "-h", "127.0.0.1", "-p", port}, args[1:]...)
	}
	wantConnExit(t, 5, []string{"does not speak MQTT 5: it answered with an MQTT 3.1.1 CONNACK, return code 1",
		"hint: the broker speaks MQTT 3.1.1: connect with -V 311, or -V auto"}, conn("pub", "-t", "v/x", "-m", "y")...)
	wantConnExit(t, 5, []string{"does not speak MQTT 5", "hint: the broker speaks MQTT 3.1.1: connect with -V 311"},
		conn("sub", "-t", "v/x", "-W", "10")...)
	wantConnExit(t, 0, nil, conn("pub", "-V", "auto", "-r", "-q", "1", "-t", "v/auto", "-m", "fell back")...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code, out, stderr := runSubCmd(ctx, conn("sub", "-V", "auto", "-t", "v/auto", "-C", "1", "-W", "10")...); code != 0 || out != "fell back\n" {
		t.Errorf("sub -V auto: exit %d, stdout %q\n%s", code, out, stderr)
	}
	wantConnExit(t, 2, []string{"--no-local needs MQTT 5, and the broker speaks MQTT 3.1.1 only (-V auto fell back to it)"},
		conn("sub", "-V", "auto", "--no-local", "-t", "v/auto", "-C", "1", "-W", "10")...)
	wantConnExit(t, 2, []string{"--user-property is an MQTT 5 property, and the broker speaks MQTT 3.1.1 only"},
		conn("pub", "-V", "auto", "--user-property", "k=v", "-t", "v/auto", "-m", "x")...)
	// Where the broker has MQTT 5, -V auto keeps it: the property is sent.
	wantConnExit(t, 0, nil, "pub", "-h", "127.0.0.1", "-p", fmt.Sprint(b.Port()), "-V", "auto", "--user-property", "k=v", "-t", "v/auto", "-m", "x")
	if _, out, _ := runSubCmd(ctx, "pub", "--help"); !strings.Contains(out, "auto (5, and 3.1.1 when the broker refuses 5)") {
		t.Errorf("pub --help does not document -V auto:\n%s", out)
	}
}
