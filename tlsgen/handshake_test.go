package tlsgen

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake runs one TLS connection over loopback between a Go server
// requiring client certificates and a Go client, and returns the client's
// and the server's errors.
func handshake(t *testing.T, dir, serverName string, clientCert *tls.Certificate) (clientErr, serverErr error) {
	t.Helper()
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	srvCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = c.Write([]byte("ok"))
		}
		done <- err
	}()
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), cfg)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2)
		_, err = io.ReadFull(c, buf)
		c.Close()
	}
	return err, <-done
}

// TestGoMutualTLSEveryKeyType shows that Go's TLS stack, which enforces
// extended key usages, accepts the server and client certificates for
// each key type, and that the server certificate cannot pose as a client.
func TestGoMutualTLSEveryKeyType(t *testing.T) {
	// RSA 3072/4096 differ from RSA 2048 only in size; leaving them out
	// keeps key generation time down on small CI machines.
	for _, kt := range []KeyType{ECDSAP256, ECDSAP384, RSA2048, Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			mustRun(t, Options{Dir: dir, KeyType: kt})
			cli, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			for _, host := range []string{"localhost", "127.0.0.1", "::1", "testhost"} {
				if cerr, serr := handshake(t, dir, host, &cli); cerr != nil || serr != nil {
					t.Errorf("%s: client %v, server %v", host, cerr, serr)
				}
			}
			if cerr, _ := handshake(t, dir, "elsewhere.example", &cli); cerr == nil || !strings.Contains(cerr.Error(), "elsewhere.example") {
				t.Errorf("wrong host name accepted: %v", cerr)
			}
			// The server certificate lacks clientAuth: a Go server refuses it.
			srvAsClient, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			_, serr := handshake(t, dir, "localhost", &srvAsClient)
			var invalid x509.CertificateInvalidError
			if serr == nil || !errors.As(serr, &invalid) || invalid.Reason != x509.IncompatibleUsage {
				t.Errorf("server certificate accepted as a client certificate: %v", serr)
			}
		})
	}
}
