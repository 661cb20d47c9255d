package mqttconn

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mqtk/mqtk/internal/clierr"
)

// TLSConfig returns the client TLS configuration Dial uses for cfg (trust,
// client certificate, server name, ALPN, lowest version, cipher suites,
// key log), for callers that make TLS handshakes of their own. File
// problems are usage errors.
func TLSConfig(cfg *Config) (*tls.Config, error) {
	return tlsConfig(cfg, nil)
}

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
	// --tls-version is the lowest version offered, as mosquitto 2.0's
	// clients use it: theirs with tlsv1.2 still negotiate TLS 1.3.
	switch t.MinVersion {
	case "1.3", "tlsv1.3":
		tc.MinVersion = tls.VersionTLS13
	case "1.1", "tlsv1.1":
		tc.MinVersion = tls.VersionTLS11
	}
	if t.Ciphers != "" {
		suites, err := ParseCiphers(t.Ciphers)
		if err != nil {
			return nil, err
		}
		tc.CipherSuites = suites
	}
	if t.KeyLogFile != "" {
		// Opened for each line rather than held open: the config lives
		// as long as the connection and its redials, with no hook to
		// close a file at the end.
		f, err := os.OpenFile(t.KeyLogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "open --tls-keylog", Err: err}
		}
		f.Close()
		tc.KeyLogWriter = keyLogFile(t.KeyLogFile)
	}
	if t.CAFile != "" || t.CAPath != "" {
		pool := x509.NewCertPool()
		if t.OSCerts {
			// --tls-use-os-certs with --cafile: trust both, as mosquitto does.
			sys, err := x509.SystemCertPool()
			if err != nil {
				return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "load the system CA certificates (--tls-use-os-certs)", Err: err}
			}
			pool = sys
		}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read --cafile", Err: err}
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read --cafile",
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
				return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read --capath", Err: err}
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
				return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "read --capath",
					Err: fmt.Errorf("no PEM certificate found in %s", t.CAPath)}
			}
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "load --cert/--key", Err: err,
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
	return &clierr.Error{Kind: clierr.KindUsage, Op: "read --cafile",
		Err:   fmt.Errorf("%s holds no CA certificate: it is the certificate of %q, issued by %q", file, leaf.Subject.String(), leaf.Issuer.String()),
		Hints: []string{"give the CA that signed it (ca.pem beside the certificates made by mqtk tlsgen, or $XDG_DATA_HOME/mqtk/tls/ca.pem for mqtk broker --tls)"}}
}

// keyLogFile appends each key log line to the file it names. crypto/tls
// writes one line per Write.
type keyLogFile string

func (k keyLogFile) Write(p []byte) (int, error) {
	f, err := os.OpenFile(string(k), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("--tls-keylog: %w", err)
	}
	n, err := f.Write(p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// openSSLCiphers maps OpenSSL's names of the TLS 1.2 suites Go implements
// to Go's identifiers. IANA names (TLS_ECDHE_RSA_WITH_...) are accepted
// too, from tls.CipherSuites and tls.InsecureCipherSuites.
func openSSLCiphers() map[string]uint16 {
	return map[string]uint16{
		"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
		"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
		"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
		"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
		"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
		"DES-CBC3-SHA":                  tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
		"ECDHE-RSA-DES-CBC3-SHA":        tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
		"RC4-SHA":                       tls.TLS_RSA_WITH_RC4_128_SHA,
		"ECDHE-RSA-RC4-SHA":             tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA,
		"ECDHE-ECDSA-RC4-SHA":           tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
	}
}

// tls13Suites are always enabled in Go, as in OpenSSL, where they are not
// part of the cipher list either: naming them is accepted and changes
// nothing.
func isTLS13Suite(name string) bool {
	switch name {
	case "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256":
		return true
	}
	return false
}

// ParseCiphers reads mosquitto's --ciphers: cipher names separated by ':'
// (',' and spaces also), in OpenSSL spelling (ECDHE-RSA-AES128-GCM-SHA256)
// or IANA spelling (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), in order of
// preference. OpenSSL's keywords and operators (HIGH, !aNULL, +, @STRENGTH)
// and suites Go does not implement are usage errors that name them.
func ParseCiphers(list string) ([]uint16, error) {
	ossl, iana := openSSLCiphers(), map[string]uint16{}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		iana[cs.Name] = cs.ID
	}
	var out []uint16
	var lacking, keywords []string
	names := strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' })
	for _, name := range names {
		if isTLS13Suite(name) {
			continue
		}
		if id, ok := ossl[name]; ok {
			out = append(out, id)
			continue
		}
		if id, ok := iana[name]; ok {
			out = append(out, id)
			continue
		}
		if strings.ContainsAny(name[:1], "!+-@") || name == strings.ToUpper(name) && !strings.ContainsAny(name, "-_") {
			keywords = append(keywords, name)
		} else {
			lacking = append(lacking, name)
		}
	}
	switch {
	case len(keywords) > 0:
		return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--ciphers: OpenSSL cipher-list keywords and operators are not supported: %s", strings.Join(keywords, ", ")),
			Hints: []string{"name the suites themselves, e.g. --ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256, or leave --ciphers out for Go's secure defaults"}}
	case len(lacking) > 0:
		return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--ciphers: Go's TLS does not implement %s", strings.Join(lacking, ", ")),
			Hints: []string{"Go has the ECDHE suites with AES-GCM, ChaCha20-Poly1305 and AES-CBC, and RSA key exchange with AES; no DHE, PSK, CCM, Camellia or ARIA suites",
				"leave --ciphers out for Go's secure defaults"}}
	case len(names) == 0:
		return nil, clierr.Usagef("--ciphers %q names no cipher suite", list)
	}
	return out, nil
}
