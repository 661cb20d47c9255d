package tlsgen

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ui"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	IO       *ui.Streams
	CAFile   string // trusted CA certificates (PEM, one or more)
	CertFile string // the certificate, optionally followed by intermediates
	Host     string // check the certificate for this host name or IP
	Now      func() time.Time
}

// Verify checks CertFile the way a TLS client would: chain to CAFile,
// validity dates, usages and, with Host, the name. The verdict is written
// in plain language: on success to stdout; on failure as a KindTLS error
// whose hints say what to do.
func Verify(o *VerifyOptions) error {
	if o.CAFile == "" {
		return clierr.Usagef("tlsgen verify needs the CA").Hintf("give --ca FILE, e.g. mqtk tlsgen verify --ca certs/ca.pem certs/server.pem")
	}
	if o.CertFile == "" {
		return clierr.Usagef("tlsgen verify needs the certificate to check").Hintf("give the certificate file, e.g. mqtk tlsgen verify --ca certs/ca.pem certs/server.pem")
	}
	if o.Host != "" {
		h := strings.TrimSuffix(strings.TrimPrefix(o.Host, "["), "]")
		if net.ParseIP(h) == nil {
			if err := checkHostname(strings.ToLower(strings.TrimSuffix(h, "."))); err != nil {
				return clierr.Usagef("--host %q is not a host name or IP address: %w", o.Host, err).
					Hintf("give the name clients connect to, e.g. --host broker.lan or --host 192.168.1.10")
			}
		}
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	cas, err := readCertFile(o.CAFile)
	if err != nil {
		return clierr.Usagef("cannot read the CA %s: %v", o.CAFile, err)
	}
	chain, err := readCertFile(o.CertFile)
	if err != nil {
		return clierr.Usagef("cannot read the certificate %s: %v", o.CertFile, err)
	}
	leaf := chain[0]
	fail := func(msg string, hints ...string) error {
		return &clierr.Error{Kind: clierr.KindTLS, Op: "verify " + o.CertFile, Err: errors.New(msg), Hints: hints}
	}
	reissue := reissueHint(leaf, o.Host)

	switch {
	case now.Before(leaf.NotBefore):
		return fail(fmt.Sprintf("not valid yet: it starts on %s, and this machine's clock says %s", leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
			"check the clock here and on the issuing machine (NTP), or reissue it: "+reissue)
	case !now.Before(leaf.NotAfter):
		return fail(fmt.Sprintf("expired on %s (%d days ago): every client will refuse it", leaf.NotAfter.UTC().Format(time.DateOnly), -daysLeft(leaf.NotAfter, now)),
			"reissue it: "+reissue)
	}

	// Go trusts whatever is in the root pool, so a server certificate given
	// as its own --ca "verifies". OpenSSL (error 20), mosquitto and MQTT
	// clients built on it do not: a certificate that is not self-signed is
	// no trust anchor. Leave the certificate itself out of the pool, and
	// refuse a pool without any CA, so the verdict is the one clients give.
	roots := x509.NewCertPool()
	leafInCA, anyCA := false, false
	for _, c := range cas {
		if c.Equal(leaf) && !selfSigned(leaf) {
			leafInCA = true
			continue
		}
		anyCA = anyCA || (c.IsCA && c.BasicConstraintsValid)
		roots.AddCert(c)
	}
	switch {
	case leafInCA && !anyCA:
		return fail(fmt.Sprintf("%s holds %s itself, not the CA that signed it: a certificate cannot vouch for itself, and OpenSSL, mosquitto and MQTT clients refuse it as --cafile", o.CAFile, o.CertFile),
			caFileHint(o))
	case !anyCA:
		return fail(fmt.Sprintf("%s is not a CA certificate (its first one is %q, a %s certificate), so it cannot vouch for anything", o.CAFile, cas[0].Subject.CommonName, roleOf(cas[0])),
			caFileHint(o))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if verr != nil {
		var ua x509.UnknownAuthorityError
		var inv x509.CertificateInvalidError
		switch {
		case errors.As(verr, &ua) && leaf.Issuer.String() == cas[0].Subject.String():
			return fail(fmt.Sprintf("not signed by this CA: it was issued by a different CA with the same name %q (key %s, but %s has key %s); the CA was probably replaced",
				leaf.Issuer.String(), keyID(leaf.AuthorityKeyId), o.CAFile, keyID(cas[0].SubjectKeyId)),
				"reissue it from the current CA: "+reissue)
		case errors.As(verr, &ua):
			return fail(fmt.Sprintf("not signed by this CA: it was issued by %q, but %s is %q", leaf.Issuer.String(), o.CAFile, cas[0].Subject.String()),
				"give the CA that issued it (to clients as --cafile too), or reissue it from this CA: "+reissue)
		case errors.As(verr, &inv) && inv.Reason == x509.Expired:
			return fail("a certificate in its chain has expired ("+inv.Detail+")",
				"replace the CA with mqtk tlsgen ca --force and reissue its certificates")
		case errors.As(verr, &inv) && inv.Reason == x509.NotAuthorizedToSign:
			return fail(o.CAFile+" is not a CA certificate, so it cannot vouch for anything",
				"give the CA file (ca.pem), not a server or client certificate, as --ca")
		case errors.As(verr, &inv) && inv.Reason == x509.CANotAuthorizedForThisName:
			return fail("the CA is name-constrained and may not sign the names in this certificate ("+inv.Detail+")",
				"issue only names inside the CA's --name-constraint, or use a CA without one")
		}
		return fail(verr.Error())
	}

	isServer := hasEKU(leaf, x509.ExtKeyUsageServerAuth) || len(leaf.ExtKeyUsage) == 0
	isClient := hasEKU(leaf, x509.ExtKeyUsageClientAuth) || len(leaf.ExtKeyUsage) == 0
	if o.Host != "" {
		if !isServer {
			return fail("it is a client certificate (extended key usage client auth only): TLS clients refuse it as a server certificate",
				"issue a server certificate: "+reissue)
		}
		host := strings.TrimSuffix(strings.TrimPrefix(o.Host, "["), "]")
		if err := leaf.VerifyHostname(host); err != nil {
			names := sanStrings(leaf)
			if len(names) == 0 {
				return fail(fmt.Sprintf("not valid for %s: it has no subjectAltName at all, and Go, MQTT.js and OpenSSL ignore the CN %q", o.Host, leaf.Subject.CommonName),
					"reissue it with names: "+reissue)
			}
			return fail(fmt.Sprintf("not valid for %s: it is valid for %s", o.Host, strings.Join(names, ", ")),
				fmt.Sprintf("connect with -h %s, or reissue it to cover %s: %s", names[0], o.Host, reissue))
		}
	}

	var role []string
	if isServer {
		role = append(role, "server")
	}
	if isClient {
		role = append(role, "client")
	}
	verdict := fmt.Sprintf("ok: %s is signed by %s (%s)", o.CertFile, o.CAFile, cas[0].Subject.CommonName)
	if o.Host != "" {
		verdict += ", valid for " + o.Host
	}
	verdict += fmt.Sprintf(", usable as a %s certificate, until %s (%d days left)\n",
		strings.Join(role, " and "), leaf.NotAfter.UTC().Format(time.DateOnly), daysLeft(leaf.NotAfter, now))
	if _, err := fmt.Fprint(o.IO.Out, verdict); err != nil {
		return err
	}
	if d := daysLeft(leaf.NotAfter, now); d < 30 {
		o.IO.Warnf("%s expires in %d days: reissue it soon: %s", o.CertFile, d, reissue)
	}
	if leaf.IsCA {
		// It chains to itself, so Verify says yes; but a broker or client
		// presenting its CA certificate is almost always a mix-up of files.
		o.IO.Warnf("%s is a CA certificate: brokers and clients should present a certificate it signed (mqtk tlsgen server NAME..., mqtk tlsgen client CN)", o.CertFile)
	}
	return nil
}

// selfSigned reports whether c is signed by its own key under its own name.
// CheckSignatureFrom is not used: it also demands that c be a CA.
func selfSigned(c *x509.Certificate) bool {
	return string(c.RawIssuer) == string(c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// roleOf names what a non-CA certificate is for.
func roleOf(c *x509.Certificate) string {
	switch {
	case hasEKU(c, x509.ExtKeyUsageServerAuth):
		return "server"
	case hasEKU(c, x509.ExtKeyUsageClientAuth):
		return "client"
	}
	return "leaf"
}

// caFileHint points at the CA file: ca.pem beside the certificate when
// there is one, as mqtk tlsgen writes it.
func caFileHint(o *VerifyOptions) string {
	guess := filepath.Join(filepath.Dir(o.CertFile), CAFile)
	if _, err := os.Stat(guess); err == nil && guess != o.CAFile {
		return fmt.Sprintf("give the CA file (ca.pem) as --ca: mqtk tlsgen verify --ca %s %s", shellQuote(guess), shellQuote(o.CertFile))
	}
	return "give the CA file (ca.pem, written next to the certificates by mqtk tlsgen) as --ca, not a server or client certificate"
}

// reissueHint is the command that would make a replacement certificate.
func reissueHint(leaf *x509.Certificate, host string) string {
	if hasEKU(leaf, x509.ExtKeyUsageClientAuth) && !hasEKU(leaf, x509.ExtKeyUsageServerAuth) {
		return "mqtk tlsgen client " + shellQuote(leaf.Subject.CommonName) + " --force"
	}
	names := sanStrings(leaf)
	if host != "" && !slices.Contains(names, host) {
		names = append([]string{host}, names...)
	}
	if len(names) == 0 {
		names = []string{"localhost"}
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = shellQuote(n)
	}
	return "mqtk tlsgen server " + strings.Join(q, " ") + " --force"
}

func keyID(id []byte) string {
	if len(id) == 0 {
		return "unknown"
	}
	return strings.ToUpper(hex.EncodeToString(id[:min(len(id), 8)]))
}
