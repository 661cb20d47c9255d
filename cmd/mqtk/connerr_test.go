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
