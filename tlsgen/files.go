package tlsgen

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// File names inside a certificate directory. The directory itself is made
// 0700 and is not meant to be shared: a broker running as a service user
// (Debian's mosquitto drops to the user mosquitto) gets copies installed
// where it can read them, as the summary prints. The CA key still sits in
// its own 0700 directory, so that loosening the certificate directory's
// mode, to hand server.pem to someone, never exposes it.
const (
	CAFile       = "ca.pem"
	CAKeyDir     = "private"
	CAKeyFile    = "ca-key.pem"
	keyFileMode  = 0o600
	certFileMode = 0o644
	dirMode      = 0o700
)

// Errors callers may test for.
var (
	// ErrNoCA means the directory holds neither a CA certificate nor its key.
	ErrNoCA = errors.New("no CA in this directory")
	// ErrExists means a file would be overwritten and Force was not set.
	ErrExists = errors.New("file exists")
)

// caPaths returns the CA certificate and key paths in dir.
func caPaths(dir string) (cert, key string) {
	return filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyDir, CAKeyFile)
}

// loadAuthority reads the CA in dir. It returns ErrNoCA when neither file
// exists, and a descriptive error when only one does, one is damaged or
// they do not match. fix is the command that replaces the CA, which
// differs between callers (mqtk tlsgen, mqtk broker --tls); the errors
// name it, in a hint, because a broken CA is otherwise a dead end. Those
// errors are a *clierr.Error of KindOther, outermost, so that a caller can
// add a hint of its own after them or wrap them in another Kind.
func loadAuthority(dir, fix string) (*Authority, error) {
	broken := func(hint string, format string, args ...any) error {
		return &clierr.Error{Kind: clierr.KindOther, Err: fmt.Errorf(format, args...), Hints: []string{hint}}
	}
	certPath, keyPath := caPaths(dir)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		return nil, ErrNoCA
	case cerr != nil && errors.Is(cerr, fs.ErrNotExist):
		return nil, broken("restore the CA certificate, or replace the CA with "+fix,
			"the CA key %s exists but the CA certificate %s is missing", keyPath, certPath)
	case cerr != nil:
		return nil, fmt.Errorf("read CA certificate: %w", cerr)
	case kerr != nil && errors.Is(kerr, fs.ErrNotExist):
		return nil, broken("restore the key, or replace the CA with "+fix,
			"the CA certificate %s exists but its key %s is missing, so it cannot sign", certPath, keyPath)
	case kerr != nil:
		return nil, fmt.Errorf("read CA key: %w", kerr)
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, broken("restore it from a copy (clients given it as --cafile have one), or replace the CA with "+fix,
			"the CA certificate %s is damaged (%v)", certPath, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, broken("restore it from a backup, or replace the CA with "+fix,
			"the CA key %s is damaged (%v)", keyPath, err)
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, broken("put the CA certificate back, or replace the CA with "+fix,
			"%s is not a CA certificate", certPath)
	}
	if !sameKey(cert, key) {
		return nil, broken("restore the matching pair, or replace the CA with "+fix,
			"the CA key %s does not belong to the CA certificate %s", keyPath, certPath)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// replaceCACommand is the command that replaces the CA in dir.
func replaceCACommand(dir string) string {
	cmd := "mqtk tlsgen ca --force"
	if dir != DefaultDir {
		cmd += " --dir " + shellQuote(dir)
	}
	return cmd
}

// saveAuthority writes the CA certificate and key into dir.
func saveAuthority(dir string, ca *Authority, force bool) error {
	certPath, keyPath := caPaths(dir)
	if err := ensureDir(filepath.Dir(keyPath)); err != nil {
		return err
	}
	keyPEM, err := encodeKey(ca.Key)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, keyPEM, keyFileMode, force); err != nil {
		return err
	}
	return writeFile(certPath, pemCert(ca.Cert.Raw), certFileMode, force)
}

// ensureDir creates dir with mode 0700, or tightens an existing directory
// that mqtk made to 0700 when it is looser. A directory that is not
// writable is reported with its path.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("check directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if filepath.Base(dir) == CAKeyDir && st.Mode().Perm() != dirMode {
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("restrict the CA key directory: %w", err)
		}
	}
	return nil
}

// writeFile writes data to path with mode perm. Without force it creates
// the file exclusively (O_EXCL), so an existing file — or a symlink planted
// where a key will go — is never followed or overwritten. With force it
// writes a new file beside it and renames it into place, so readers see the
// old file or the new one, never a half-written key.
func writeFile(path string, data []byte, perm os.FileMode, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		return finish(f, path, data)
	}
	var rb [8]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return fmt.Errorf("random temp name: %w", err)
	}
	tmp := path + ".tmp-" + hex.EncodeToString(rb[:])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := finish(f, tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// finish writes, syncs and closes f, removing the file on any failure.
func finish(f *os.File, path string, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// parseCerts reads every certificate in PEM data, or one DER certificate.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	sawPEM := false
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if !sawPEM {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor DER certificate data")
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificate in the file")
	}
	return certs, nil
}

// readCertFile reads the certificates in path.
func readCertFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// daysLeft is the number of whole days from now until t (negative after).
func daysLeft(t, now time.Time) int {
	d := t.Sub(now)
	if d < 0 {
		return -int((-d).Hours() / 24)
	}
	return int(d.Hours() / 24)
}
