package tlsgen

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// Validity defaults, in days. 397 days keeps leaves inside the limit Apple
// platforms and browsers enforce; above 825 days Apple rejects server
// certificates outright; a development CA lives ten years.
const (
	DefaultLeafDays = 397
	DefaultCADays   = 3650
	MaxQuietLeaf    = 825

	// backdate covers clocks that run a little behind the one that issued
	// the certificate (small devices without NTP, VMs after resume).
	backdate = time.Hour
)

// validity returns NotBefore and NotAfter for a certificate valid for days.
// NotAfter counts from the back-dated NotBefore, not from now: Apple and
// the CA/Browser Forum measure the period NotAfter-NotBefore, so `--days
// 825` must give exactly 825 days, not 825 days and an hour that Apple
// rejects. Ending an hour early costs nothing; warning instead would leave
// the user with a certificate that fails on the very limit they chose.
func validity(now time.Time, days int) (notBefore, notAfter time.Time) {
	notBefore = now.Add(-backdate).UTC()
	return notBefore, notBefore.AddDate(0, 0, days)
}

// validDays is the validity period of c in whole days, rounded, so that
// certificates issued before NotAfter counted from NotBefore (an hour
// longer) still read as the --days they were made with.
func validDays(c *x509.Certificate) int {
	return int((c.NotAfter.Sub(c.NotBefore) + 12*time.Hour) / (24 * time.Hour))
}

// Authority is a CA that can sign certificates.
type Authority struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Issued is a newly issued key and certificate.
type Issued struct {
	Cert    *x509.Certificate
	CertDER []byte
	Key     crypto.Signer
}

// CertPEM returns the certificate in PEM form.
func (i *Issued) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.CertDER})
}

// serial returns a random positive serial of exactly 20 octets, the maximum
// RFC 5280 allows: unpredictable, so issuing the same name twice never
// collides, and never a counter.
// keyAndSerial makes a new certificate's private key and serial number.
func keyAndSerial(kt KeyType, rnd io.Reader, what string) (crypto.Signer, *big.Int, error) {
	key, err := generateKey(kt, rnd)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s: %w", what, err)
	}
	sn, err := serial(rnd)
	if err != nil {
		return nil, nil, err
	}
	return key, sn, nil
}

func serial(rnd io.Reader) (*big.Int, error) {
	b := make([]byte, 20)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return nil, fmt.Errorf("read random serial: %w", err)
	}
	b[0] &= 0x7f // positive, so DER needs no leading zero octet
	b[0] |= 0x40 // and not shorter than 20 octets
	return new(big.Int).SetBytes(b), nil
}

// caParams describes a new CA.
type caParams struct {
	CommonName  string
	KeyType     KeyType
	Days        int
	Constraints []string // permitted DNS domains or IP ranges (CIDR)
	Now         time.Time
	Rand        io.Reader
}

// newAuthority creates a self-signed CA that signs leaves only: no
// intermediate may sit below it (MaxPathLenZero), as mkcert does.
func newAuthority(p caParams) (*Authority, error) {
	rnd := orRand(p.Rand)
	key, sn, err := keyAndSerial(p.KeyType, rnd, "CA key")
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := validity(p.Now, p.Days)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			CommonName:   p.CommonName,
			Organization: []string{"mqtk development CA"},
		},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		// SubjectKeyId is left empty: Go derives it from the public key.
	}
	for _, c := range p.Constraints {
		if _, ipnet, err := net.ParseCIDR(c); err == nil {
			tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, ipnet)
			continue
		}
		tmpl.PermittedDNSDomains = append(tmpl.PermittedDNSDomains, strings.TrimPrefix(strings.ToLower(c), "."))
	}
	if len(p.Constraints) > 0 {
		// Critical, so that a client that cannot enforce the constraint
		// rejects the CA instead of trusting it for every name (RFC 5280
		// 4.2.1.10 says conforming CAs MUST mark it critical).
		tmpl.PermittedDNSDomainsCritical = true
	}
	der, err := x509.CreateCertificate(rnd, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// leafParams describes a server or client certificate.
type leafParams struct {
	CommonName string
	SANs       []SAN
	Client     bool // clientAuth instead of serverAuth
	KeyType    KeyType
	Days       int
	Now        time.Time
	Rand       io.Reader
}

// issue creates a key and a certificate signed by ca, then checks it the
// way a client would, so that a constraint violation or a usage mistake is
// caught here rather than in a TLS handshake.
func (ca *Authority) issue(p leafParams) (*Issued, error) {
	rnd := orRand(p.Rand)
	key, sn, err := keyAndSerial(p.KeyType, rnd, "key")
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := validity(p.Now, p.Days)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: p.CommonName, Organization: []string{"mqtk development certificate"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		// DigitalSignature for (EC)DHE handshakes; KeyEncipherment only
		// matters for RSA key exchange, so only RSA keys carry it.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if p.Client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	for _, s := range p.SANs {
		switch s.Kind {
		case SANDNS, SANWildcard:
			tmpl.DNSNames = append(tmpl.DNSNames, s.Value)
		case SANIP:
			tmpl.IPAddresses = append(tmpl.IPAddresses, s.IP)
		case SANURI:
			tmpl.URIs = append(tmpl.URIs, s.URI)
		case SANEmail:
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, s.Value)
		}
	}
	der, err := x509.CreateCertificate(rnd, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	if err := ca.check(cert, p.Now); err != nil {
		return nil, fmt.Errorf("the new certificate does not verify against its CA: %w", err)
	}
	return &Issued{Cert: cert, CertDER: der, Key: key}, nil
}

// check verifies cert against ca alone, at now.
func (ca *Authority) check(cert *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var cErr x509.CertificateInvalidError
		if asInvalid(err, &cErr) && cErr.Reason == x509.CANotAuthorizedForThisName {
			return &clierr.Error{
				Kind:  clierr.KindOther,
				Err:   fmt.Errorf("the CA is name-constrained and may not sign these names (%v)", err),
				Hints: []string{"issue only names inside its constraint, or make a CA without --name-constraint"},
			}
		}
		return err
	}
	return nil
}

func orRand(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

func asInvalid(err error, target *x509.CertificateInvalidError) bool {
	return errors.As(err, target)
}
