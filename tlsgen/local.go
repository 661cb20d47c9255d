package tlsgen

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// LocalFiles are the files EnsureLocal made or found.
type LocalFiles struct {
	CAFile, CertFile, KeyFile string
	// Created is true when anything was generated on this call; CACreated
	// when that includes a new CA, which clients must be given as --cafile.
	Created, CACreated bool
}

// renewBefore is how close to expiry a managed server certificate may get
// before EnsureLocal quietly replaces it.
const renewBefore = 30 * 24 * time.Hour

// EnsureLocal creates or reuses a CA and a localhost server certificate in
// dir (0700), for `mqtk broker --tls`.
//
// The CA is reused as long as it is valid, so clients keep trusting the same
// --cafile across broker restarts. The server certificate (server.pem,
// server-key.pem) covers localhost, 127.0.0.1, ::1 and the machine's host
// name; it is reissued when missing, not signed by the CA, missing one of
// those names, or within 30 days of expiry. An expired CA is replaced, since
// nothing can use it any more.
func EnsureLocal(dir string) (LocalFiles, error) {
	return ensureLocal(dir, time.Now(), os.Hostname)
}

// LocalPaths names the files EnsureLocal keeps in dir without touching
// anything, so that mqtk broker --tls can fill in its options before it
// makes them.
func LocalPaths(dir string) LocalFiles {
	files := LocalFiles{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem")}
	files.CAFile, _ = caPaths(dir)
	return files
}

func ensureLocal(dir string, now time.Time, hostname func() (string, error)) (LocalFiles, error) {
	files := LocalPaths(dir)
	certPath, keyPath := files.CertFile, files.KeyFile
	if err := ensureDir(dir); err != nil {
		return files, err
	}
	// The managed directory holds keys; keep it private even if it existed.
	if err := os.Chmod(dir, dirMode); err != nil {
		return files, fmt.Errorf("restrict %s: %w", dir, err)
	}
	// mqtk broker has no --force: the CA is replaced with tlsgen, and the
	// next start reissues the server certificate from it (serverStillGood
	// finds the old one not signed by the new CA).
	ca, err := loadAuthority(dir, "mqtk tlsgen ca --force --dir "+shellQuote(dir))
	if err == nil && !now.Before(ca.Cert.NotAfter) {
		ca, err = nil, ErrNoCA // expired: as good as absent
	}
	if errors.Is(err, ErrNoCA) {
		ca, err = newAuthority(caParams{
			CommonName: localCAName(hostname),
			KeyType:    ECDSAP256,
			Days:       DefaultCADays,
			Now:        now,
		})
		if err != nil {
			return files, err
		}
		if err := saveAuthority(dir, ca, true); err != nil {
			return files, err
		}
		files.Created, files.CACreated = true, true
	} else if err != nil {
		// The error names the files; the caller adds the directory. What
		// to do after the fix goes after loadAuthority's hints on the fix,
		// so it is added to its error rather than wrapped around it.
		var e *clierr.Error
		if !errors.As(err, &e) {
			e = &clierr.Error{Kind: clierr.KindOther, Err: err}
		}
		return files, e.Hintf("after replacing the CA, start mqtk broker --tls again: it reissues the server certificate from the new CA; clients then need the new %s as --cafile", files.CAFile)
	}

	sans, err := classifyAll(defaultServerNames(hostname))
	if err != nil {
		return files, err
	}
	if !files.Created && serverStillGood(ca, certPath, keyPath, sans, now) {
		return files, nil
	}
	leaf, err := ca.issue(leafParams{
		CommonName: "localhost",
		SANs:       sans,
		KeyType:    ECDSAP256,
		Days:       DefaultLeafDays,
		Now:        now,
	})
	if err != nil {
		return files, err
	}
	keyPEM, err := encodeKey(leaf.Key)
	if err != nil {
		return files, err
	}
	if err := writeFile(keyPath, keyPEM, keyFileMode, true); err != nil {
		return files, err
	}
	if err := writeFile(certPath, leaf.CertPEM(), certFileMode, true); err != nil {
		return files, err
	}
	files.Created = true
	return files, nil
}

// serverStillGood reports whether the server certificate and key in place
// can be served as they are.
func serverStillGood(ca *Authority, certPath, keyPath string, sans []SAN, now time.Time) bool {
	certs, err := readCertFile(certPath)
	if err != nil {
		return false
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return false
	}
	key, err := parseKey(keyPEM)
	if err != nil || !sameKey(certs[0], key) {
		return false
	}
	c := certs[0]
	if ca.check(c, now) != nil || c.NotAfter.Sub(now) < renewBefore {
		return false
	}
	return len(uncovered(c, sans)) == 0
}

// uncovered returns the names in sans that c does not list among its SANs.
func uncovered(c *x509.Certificate, sans []SAN) []string {
	var missing []string
	for _, s := range sans {
		if !coversSAN(c, s) {
			missing = append(missing, s.Value)
		}
	}
	return missing
}

// coversSAN reports whether c lists s among its SANs.
func coversSAN(c *x509.Certificate, s SAN) bool {
	switch s.Kind {
	case SANIP:
		for _, ip := range c.IPAddresses {
			if ip.Equal(s.IP) {
				return true
			}
		}
	case SANDNS, SANWildcard:
		for _, d := range c.DNSNames {
			if strings.EqualFold(d, s.Value) {
				return true
			}
		}
	case SANEmail:
		for _, e := range c.EmailAddresses {
			if e == s.Value {
				return true
			}
		}
	case SANURI:
		for _, u := range c.URIs {
			if u.String() == s.Value {
				return true
			}
		}
	}
	return false
}

// defaultServerNames are the names a development broker is reached by.
func defaultServerNames(hostname func() (string, error)) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if hostname == nil {
		return names
	}
	h, err := hostname()
	if err != nil {
		return names
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || h == "localhost" {
		return names
	}
	// A host name that is not a valid DNS name (rare, but some systems
	// allow it) is left out rather than failing the whole run.
	if _, err := ClassifyName(h); err != nil {
		return names
	}
	return append(names, h)
}

// localCAName is the CA's common name: who made it, on which machine, so
// that a user looking at a trust store can tell several mqtk CAs apart.
func localCAName(hostname func() (string, error)) string {
	who := os.Getenv("USER")
	if who == "" {
		who = os.Getenv("LOGNAME")
	}
	host := ""
	if hostname != nil {
		host, _ = hostname()
	}
	switch {
	case who != "" && host != "":
		return "mqtk local CA " + who + "@" + host
	case host != "":
		return "mqtk local CA " + host
	}
	return "mqtk local CA"
}
