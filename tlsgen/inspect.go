package tlsgen

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ui"
)

// InspectOptions configure Inspect.
type InspectOptions struct {
	IO    *ui.Streams
	Files []string
	JSON  bool             // one JSON array on stdout instead of text
	Now   func() time.Time // test seam; default time.Now
}

// CertInfo is what Inspect reports about one certificate or key. Its JSON
// field names are a stable interface for scripts.
type CertInfo struct {
	File                string    `json:"file"`
	Index               int       `json:"index"` // position in the file, from 0
	Type                string    `json:"type"`  // "certificate" or "private-key"
	Subject             string    `json:"subject,omitempty"`
	Issuer              string    `json:"issuer,omitempty"`
	CommonName          string    `json:"common_name,omitempty"`
	DNSNames            []string  `json:"dns_names,omitempty"`
	IPAddresses         []string  `json:"ip_addresses,omitempty"`
	URIs                []string  `json:"uris,omitempty"`
	Emails              []string  `json:"emails,omitempty"`
	NotBefore           time.Time `json:"not_before,omitzero"`
	NotAfter            time.Time `json:"not_after,omitzero"`
	DaysLeft            int       `json:"days_left"`
	Expired             bool      `json:"expired"`
	KeyType             string    `json:"key_type"`
	KeyUsage            []string  `json:"key_usage,omitempty"`
	ExtKeyUsage         []string  `json:"ext_key_usage,omitempty"`
	IsCA                bool      `json:"is_ca"`
	MaxPathLen          *int      `json:"max_path_len,omitempty"`
	PermittedDNSDomains []string  `json:"permitted_dns_domains,omitempty"`
	PermittedIPRanges   []string  `json:"permitted_ip_ranges,omitempty"`
	SelfSigned          bool      `json:"self_signed"`
	Serial              string    `json:"serial,omitempty"`
	SHA256              string    `json:"sha256,omitempty"`
	Mode                string    `json:"mode,omitempty"` // private keys: the file's mode
	Warnings            []string  `json:"warnings,omitempty"`
}

// Inspect describes every certificate and private key in the files.
func Inspect(o *InspectOptions) error {
	if len(o.Files) == 0 {
		return clierr.Usagef("tlsgen inspect needs at least one file").Hintf("give one or more files, e.g. mqtk tlsgen inspect certs/server.pem")
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	var all []CertInfo
	for _, f := range o.Files {
		infos, err := inspectFile(f, now)
		if err != nil {
			return err
		}
		all = append(all, infos...)
	}
	if o.JSON {
		enc := json.NewEncoder(o.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(all)
	}
	var b strings.Builder
	for i, c := range all {
		if i > 0 {
			b.WriteByte('\n')
		}
		writeInfo(&b, c)
	}
	_, err := fmt.Fprint(o.IO.Out, b.String())
	return err
}

func inspectFile(path string, now time.Time) ([]CertInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, clierr.Usagef("cannot read %s: %v", path, err)
	}
	var out []CertInfo
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				// Bad input like a file of junk: a usage error that says
				// what to do, not a bare x509 message.
				return nil, clierr.Usagef("%s: entry %d is a PEM CERTIFICATE block that does not parse (%v): the file is damaged or truncated", path, len(out), err).
					Hintf("copy it again from where it was made, or reissue it")
			}
			out = append(out, describeCert(path, len(out), c, now))
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			info, err := describeKey(path, len(out), pem.EncodeToMemory(b))
			if err != nil {
				return nil, clierr.Usagef("%v: the file is damaged or truncated", err).
					Hintf("copy it again from where it was made, or reissue the certificate and its key")
			}
			out = append(out, info)
		}
	}
	if len(out) == 0 {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, clierr.Usagef("%s holds no PEM certificate or key and is not a DER certificate", path).
				Hintf("give a .pem/.crt file (for a .p12 run: openssl pkcs12 -in FILE -nokeys)")
		}
		out = append(out, describeCert(path, 0, c, now))
	}
	return out, nil
}

func describeCert(path string, idx int, c *x509.Certificate, now time.Time) CertInfo {
	i := CertInfo{
		File:                path,
		Index:               idx,
		Type:                "certificate",
		Subject:             c.Subject.String(),
		Issuer:              c.Issuer.String(),
		CommonName:          c.Subject.CommonName,
		DNSNames:            c.DNSNames,
		Emails:              c.EmailAddresses,
		NotBefore:           c.NotBefore.UTC(),
		NotAfter:            c.NotAfter.UTC(),
		DaysLeft:            daysLeft(c.NotAfter, now),
		Expired:             !now.Before(c.NotAfter),
		KeyType:             keyDescription(c.PublicKey),
		KeyUsage:            keyUsageNames(c.KeyUsage),
		ExtKeyUsage:         extKeyUsageNames(c.ExtKeyUsage),
		IsCA:                c.IsCA,
		PermittedDNSDomains: c.PermittedDNSDomains,
		SelfSigned:          c.CheckSignatureFrom(c) == nil && string(c.RawIssuer) == string(c.RawSubject),
		Serial:              hex.EncodeToString(c.SerialNumber.Bytes()),
		SHA256:              fingerprint(c),
	}
	for _, ip := range c.IPAddresses {
		i.IPAddresses = append(i.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		i.URIs = append(i.URIs, u.String())
	}
	for _, r := range c.PermittedIPRanges {
		i.PermittedIPRanges = append(i.PermittedIPRanges, r.String())
	}
	if c.IsCA && c.BasicConstraintsValid && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
		n := c.MaxPathLen
		i.MaxPathLen = &n
	}
	if now.Before(c.NotBefore) {
		i.Warnings = append(i.Warnings, "not valid yet: starts "+c.NotBefore.UTC().Format(time.RFC3339))
	}
	if i.Expired {
		i.Warnings = append(i.Warnings, "expired "+c.NotAfter.UTC().Format(time.DateOnly))
	} else if !c.IsCA && i.DaysLeft < 30 {
		i.Warnings = append(i.Warnings, fmt.Sprintf("expires in %d days", i.DaysLeft))
	}
	if !c.IsCA && len(c.DNSNames)+len(c.IPAddresses)+len(c.URIs)+len(c.EmailAddresses) == 0 && hasEKU(c, x509.ExtKeyUsageServerAuth) {
		i.Warnings = append(i.Warnings, "no subjectAltName: Go, MQTT.js and current OpenSSL ignore the CN, so no host name matches")
	}
	return i
}

func describeKey(path string, idx int, pemData []byte) (CertInfo, error) {
	k, err := parseKey(pemData)
	if err != nil {
		return CertInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	i := CertInfo{File: path, Index: idx, Type: "private-key", KeyType: keyDescription(k.Public())}
	if st, err := os.Stat(path); err == nil {
		m := st.Mode().Perm()
		i.Mode = fmt.Sprintf("%04o", m)
		if m&0o077 != 0 {
			i.Warnings = append(i.Warnings, fmt.Sprintf("readable by others (mode %04o): run chmod 600 %s", m, path))
		}
	}
	return i, nil
}

func writeInfo(b *strings.Builder, c CertInfo) {
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(b, "  %-12s %s\n", k, v)
		}
	}
	fmt.Fprintf(b, "%s", c.File)
	if c.Index > 0 {
		fmt.Fprintf(b, " #%d", c.Index)
	}
	b.WriteString(":\n")
	if c.Type == "private-key" {
		row("private key", c.KeyType)
		row("mode", c.Mode)
	} else {
		row("subject", c.Subject)
		row("issuer", c.Issuer)
		var sans []string
		for _, d := range c.DNSNames {
			sans = append(sans, "DNS:"+d)
		}
		for _, ip := range c.IPAddresses {
			sans = append(sans, "IP:"+ip)
		}
		for _, u := range c.URIs {
			sans = append(sans, "URI:"+u)
		}
		for _, e := range c.Emails {
			sans = append(sans, "email:"+e)
		}
		row("names", strings.Join(sans, ", "))
		left := fmt.Sprintf("%d days left", c.DaysLeft)
		if c.Expired {
			left = fmt.Sprintf("EXPIRED %d days ago", -c.DaysLeft)
		}
		row("valid", fmt.Sprintf("%s to %s (%s)", c.NotBefore.Format("2006-01-02 15:04 MST"), c.NotAfter.Format("2006-01-02 15:04 MST"), left))
		row("key", c.KeyType)
		row("usage", strings.Join(append(append([]string{}, c.KeyUsage...), c.ExtKeyUsage...), ", "))
		if c.IsCA {
			ca := "yes"
			if c.MaxPathLen != nil && *c.MaxPathLen == 0 {
				ca += ", signs leaf certificates only (path length 0)"
			}
			if c.SelfSigned {
				ca += ", self-signed root"
			}
			row("CA", ca)
			row("constraint", strings.Join(append(append([]string{}, c.PermittedDNSDomains...), c.PermittedIPRanges...), ", "))
		}
		row("serial", c.Serial)
		row("SHA-256", c.SHA256)
	}
	for _, w := range c.Warnings {
		row("warning", w)
	}
}

func keyUsageNames(u x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digital signature"},
		{x509.KeyUsageContentCommitment, "content commitment"},
		{x509.KeyUsageKeyEncipherment, "key encipherment"},
		{x509.KeyUsageDataEncipherment, "data encipherment"},
		{x509.KeyUsageKeyAgreement, "key agreement"},
		{x509.KeyUsageCertSign, "certificate sign"},
		{x509.KeyUsageCRLSign, "CRL sign"},
		{x509.KeyUsageEncipherOnly, "encipher only"},
		{x509.KeyUsageDecipherOnly, "decipher only"},
	}
	var out []string
	for _, n := range names {
		if u&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func extKeyUsageNames(us []x509.ExtKeyUsage) []string {
	var out []string
	for _, u := range us {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "server auth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "client auth")
		case x509.ExtKeyUsageAny:
			out = append(out, "any")
		case x509.ExtKeyUsageCodeSigning:
			out = append(out, "code signing")
		case x509.ExtKeyUsageEmailProtection:
			out = append(out, "email protection")
		case x509.ExtKeyUsageOCSPSigning:
			out = append(out, "OCSP signing")
		case x509.ExtKeyUsageTimeStamping:
			out = append(out, "time stamping")
		default:
			out = append(out, fmt.Sprintf("other (%d)", u))
		}
	}
	return out
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func shortFingerprint(c *x509.Certificate) string {
	return fingerprint(c)[:23]
}
