package mqttconn

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// tlsConfig builds the client TLS configuration from cfg.TLS. File problems
// are usage errors: nothing was tried on the network yet.
func tlsConfig(cfg *Config, st *connState) (*tls.Config, error) {
	t := cfg.TLS
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: t.ServerName,
		NextProtos: t.ALPN,
		// --insecure skips all verification, as mosquitto 2.1 and MQTTX do:
		// skipping only the hostname (mosquitto 2.0) surprised people.
		InsecureSkipVerify: t.Insecure,
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.Host
	}
	switch t.MinVersion {
	case "1.3", "tlsv1.3":
		tc.MinVersion = tls.VersionTLS13
	}
	if t.CAFile != "" || t.CAPath != "" {
		pool := x509.NewCertPool()
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, &Error{Kind: KindUsage, Op: "read --cafile", Err: err}
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, &Error{Kind: KindUsage, Op: "read --cafile",
					Err:   fmt.Errorf("%s holds no PEM certificate", t.CAFile),
					Hints: []string{"give the CA certificate in PEM form (-----BEGIN CERTIFICATE-----)"}}
			}
			if err := checkTrustAnchors(t.CAFile, pem); err != nil {
				return nil, err
			}
		}
		if t.CAPath != "" {
			entries, err := os.ReadDir(t.CAPath)
			if err != nil {
				return nil, &Error{Kind: KindUsage, Op: "read --capath", Err: err}
			}
			n := 0
			for _, e := range entries {
				if e.IsDir() {
					continue
				}
				pem, err := os.ReadFile(filepath.Join(t.CAPath, e.Name()))
				if err == nil && pool.AppendCertsFromPEM(pem) {
					n++
				}
			}
			if n == 0 {
				return nil, &Error{Kind: KindUsage, Op: "read --capath",
					Err: fmt.Errorf("no PEM certificate found in %s", t.CAPath)}
			}
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, &Error{Kind: KindUsage, Op: "load --cert/--key", Err: err,
				Hints: []string{"--cert and --key must be a PEM certificate and its matching private key"}}
		}
		tc.Certificates = []tls.Certificate{cert}
		if st != nil {
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				st.certRequested.Store(true)
				return &cert, nil
			}
		}
	} else if st != nil {
		// With TLS 1.3 a broker that requires a client certificate lets
		// the handshake finish and then resets the connection, so the
		// request itself is the only clue to what went wrong.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			st.certRequested.Store(true)
			return &tls.Certificate{}, nil
		}
	}
	return tc, nil
}

// checkTrustAnchors refuses a --cafile that holds only certificates that
// cannot anchor a chain: leaves issued by someone else (the broker's own
// server.pem given by mistake). Go would trust such a leaf directly and
// connect, while mosquitto_pub and OpenSSL refuse the same file, so the
// mistake would surface only with another client. A self-signed leaf is
// kept: pinning it is a deliberate, OpenSSL-compatible choice.
func checkTrustAnchors(file string, data []byte) error {
	var leaf *x509.Certificate
	for len(data) > 0 {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		// CheckSignatureFrom(c) would refuse any leaf as a parent, so a
		// self-signed leaf is recognised by its names and own signature.
		selfSigned := bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
		if c.IsCA || selfSigned {
			return nil
		}
		if leaf == nil {
			leaf = c
		}
	}
	if leaf == nil {
		return nil
	}
	return &Error{Kind: KindUsage, Op: "read --cafile",
		Err:   fmt.Errorf("%s holds no CA certificate: it is the certificate of %q, issued by %q", file, leaf.Subject.String(), leaf.Issuer.String()),
		Hints: []string{"give the CA that signed it (ca.pem beside the certificates made by mqtk tlsgen, or $XDG_DATA_HOME/mqtk/tls/ca.pem for mqtk broker --tls)"}}
}
