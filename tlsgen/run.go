package tlsgen

// Run and its flow: the options, the CA to use or make, and each
// certificate issued or reused into the directory. Checking the options
// is in validate.go, reuse and conflicting flags in reuse.go, name
// constraints in constraints.go, the closing summary in summary.go.

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ctxio"
	"github.com/mqtk/mqtk/internal/ui"
)

// Command selects what Run makes.
type Command string

// The issuing commands.
const (
	CmdAll    Command = ""       // CA + server for local names + client
	CmdCA     Command = "ca"     // the CA only
	CmdServer Command = "server" // a server certificate for Names
	CmdClient Command = "client" // a client certificate for CommonName
)

// DefaultDir is where certificates go when --dir is not given.
const DefaultDir = "certs"

// DefaultClientCN is the client certificate's CN when none is given; with
// use_identity_as_username it is the MQTT user name the broker sees.
const DefaultClientCN = "mqtk-client"

// Options configure Run. Zero values mean the documented defaults.
type Options struct {
	IO      *ui.Streams
	Command Command
	Dir     string // default ./certs

	Names      []string // server: the names to cover
	CommonName string   // client: the CN (MQTT user name); ca: the CA's CN
	Out        string   // base file name; default "server" or "client"

	KeyType         KeyType
	Days            int // 0: 397 for leaves, 3650 for a CA
	Force           bool
	Fullchain       bool
	P12             bool
	P12Legacy       bool
	P12Password     string
	NameConstraints []string // for a new CA

	// Test seams.
	Now      func() time.Time
	Hostname func() (string, error)
	Rand     io.Reader
}

// written is one line of the summary.
type written struct {
	what, path, note string
}

// runner carries one Run's state.
type runner struct {
	ctx   context.Context // this Run's; Ctrl-C ends a slow key generation (ctxio.Do)
	o     *Options
	now   time.Time
	dir   string
	files []written
	sans  []SAN // the classified server names
}

// Run issues what o.Command asks for into o.Dir.
func Run(ctx context.Context, o *Options) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &runner{ctx: ctx, o: o, now: time.Now(), dir: o.Dir}
	if o.Now != nil {
		r.now = o.Now()
	}
	if r.dir == "" {
		r.dir = DefaultDir
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	if err := r.validate(); err != nil {
		return err
	}
	return r.dirHint(r.run())
}

// dirHint adds a hint naming --dir to a file system error that means the
// directory cannot hold the files: the message alone ("mkdir certs: not a
// directory") does not say which flag chose the place. It stays exit 1,
// the code for runtime errors, like any other I/O failure.
func (r *runner) dirHint(err error) error {
	var known *clierr.Error
	if err == nil || errors.As(err, &known) {
		return err
	}
	var hint string
	switch {
	case errors.Is(err, syscall.ENOTDIR):
		hint = fmt.Sprintf("--dir %s is, or is inside, something that is not a directory: give --dir a directory, e.g. --dir ./certs", shellQuote(r.dir))
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		hint = fmt.Sprintf("you cannot write to --dir %s: give --dir a directory of yours, e.g. --dir ./certs, or fix its permissions", shellQuote(r.dir))
	default:
		return err
	}
	return &clierr.Error{Kind: clierr.KindOther, Err: err, Hints: []string{hint}}
}

// run makes the files once the options are known to be good.
func (r *runner) run() error {
	o := r.o
	if err := os.MkdirAll(r.dir, dirMode); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	ca, err := r.authority()
	if err != nil {
		return err
	}
	switch o.Command {
	case CmdCA:
	case CmdServer:
		if err := r.leaf(ca, r.base("server"), leafParams{CommonName: commonNameFor(r.sans), SANs: r.sans}, false); err != nil {
			return err
		}
	case CmdClient:
		if err := r.leaf(ca, r.base("client"), leafParams{CommonName: o.CommonName, Client: true}, false); err != nil {
			return err
		}
	case CmdAll:
		sans, err := classifyAll(defaultServerNames(o.Hostname))
		if err != nil {
			return err
		}
		cn := o.CommonName
		if cn == "" {
			cn = DefaultClientCN
		}
		server := leafParams{CommonName: "localhost", SANs: sans}
		client := leafParams{CommonName: cn, Client: true}
		if err := r.reuseConflicts(map[string]leafParams{"server": server, "client": client}); err != nil {
			return err
		}
		if err := r.leaf(ca, "server", server, true); err != nil {
			return err
		}
		if err := r.leaf(ca, "client", client, true); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown tlsgen command %q", o.Command)
	}
	return r.summary()
}

func (r *runner) base(def string) string {
	if r.o.Out != "" {
		return r.o.Out
	}
	return def
}

// authority loads the CA from the directory, makes one when there is none,
// and replaces it when asked to with --force.
func (r *runner) authority() (*Authority, error) {
	o := r.o
	certPath, keyPath := caPaths(r.dir)
	existing, err := loadAuthority(r.dir, replaceCACommand(r.dir))
	replace := o.Force && (o.Command == CmdCA || o.Command == CmdAll)
	switch {
	case err == nil && !replace:
		if !r.now.Before(existing.Cert.NotAfter) {
			return nil, clierr.Usagef("the CA %s expired on %s", certPath, existing.Cert.NotAfter.UTC().Format(time.DateOnly)).
				Hintf("replace it with %s (every certificate it signed must then be reissued)", replaceCACommand(r.dir))
		}
		if err := r.caConflicts(existing.Cert); err != nil {
			return nil, err
		}
		r.files = append(r.files, written{"CA", certPath, "reused, " + describeValidity(existing.Cert, r.now)})
		return existing, nil
	case err != nil && !errors.Is(err, ErrNoCA) && !replace:
		// %w keeps loadAuthority's hints, which say how to restore or
		// replace the CA.
		return nil, clierr.Usagef("%w", err)
	}
	days := o.Days
	if days == 0 || o.Command != CmdCA {
		days = DefaultCADays
	}
	cn := localCAName(o.Hostname)
	if o.Command == CmdCA && o.CommonName != "" {
		cn = o.CommonName
	}
	ca, nerr := ctxio.Do(r.ctx, func() (*Authority, error) {
		return newAuthority(caParams{
			CommonName:  cn,
			KeyType:     o.KeyType,
			Days:        days,
			Constraints: o.NameConstraints,
			Now:         r.now,
			Rand:        o.Rand,
		})
	})
	if nerr != nil {
		return nil, nerr
	}
	if err := saveAuthority(r.dir, ca, replace); err != nil {
		return nil, err
	}
	note := "created, " + describeValidity(ca.Cert, r.now)
	if len(o.NameConstraints) > 0 {
		note += ", may sign only for " + strings.Join(o.NameConstraints, ", ")
	}
	if err == nil || !errors.Is(err, ErrNoCA) {
		old := "the old CA"
		if existing != nil {
			old = fmt.Sprintf("the old CA (SHA-256 %s)", shortFingerprint(existing.Cert))
		}
		if o.Command == CmdAll {
			r.warnf("replaced the CA in %s: every certificate signed by %s stops working; the server and client certificates here are reissued, others must be reissued too, and every client needs the new %s", r.dir, old, certPath)
		} else {
			r.warnf("replaced the CA in %s: every certificate signed by %s stops working; reissue server and client certificates and give every client the new %s", r.dir, old, certPath)
		}
		note = "replaced, " + describeValidity(ca.Cert, r.now)
	}
	r.files = append(r.files, written{"CA", certPath, note}, written{"CA key", keyPath, "keep private: it can sign for any name"})
	return ca, nil
}

// leaf issues one certificate and writes base.pem and base-key.pem (and
// the optional fullchain and PKCS#12 files). With reuse, a valid pair that
// already chains to ca is kept instead, which makes `mqtk tlsgen` safe to
// run again; asked-for extras that are missing are then made from it.
func (r *runner) leaf(ca *Authority, base string, p leafParams, reuse bool) error {
	o := r.o
	what := "server"
	if p.Client {
		what = "client"
	}
	certPath := filepath.Join(r.dir, base+".pem")
	keyPath := filepath.Join(r.dir, base+"-key.pem")
	chainPath := filepath.Join(r.dir, base+"-fullchain.pem")
	p12Path := filepath.Join(r.dir, base+".p12")
	exists := func(path string) bool { _, err := os.Lstat(path); return err == nil }

	var cert *x509.Certificate
	var certPEM []byte
	var key crypto.Signer
	reused := false
	if !o.Force && (exists(certPath) || exists(keyPath)) {
		if !reuse {
			existing := certPath
			if !exists(certPath) {
				existing = keyPath
			}
			return clierr.Usagef("%s already exists", existing).Hintf("add --force to replace it, or --out NAME to write NAME.pem instead")
		}
		c, k, why := r.reusable(ca, certPath, keyPath, p)
		if c == nil {
			// --force on this command would replace the CA as well, so
			// name the command that reissues just this certificate.
			return clierr.Usagef("%s cannot be reused: %s", certPath, why).
				Hintf("reissue it with %s (keeps the CA), or run mqtk tlsgen --force to replace the CA and every certificate", r.reissueCommand(p))
		}
		cert, certPEM, key, reused = c, pemCert(c.Raw), k, true
		r.files = append(r.files, written{what, certPath, "reused, " + describeValidity(c, r.now)}, written{what + " key", keyPath, "reused"})
	}
	// Extras next to a new certificate must not clobber older files; next
	// to a reused one, existing extras are kept as they are.
	wantChain := o.Fullchain && (o.Force || !reused || !exists(chainPath))
	wantP12 := o.P12 && (o.Force || !reused || !exists(p12Path))
	if !o.Force && !reused {
		for _, f := range []struct {
			want bool
			path string
		}{{o.Fullchain, chainPath}, {o.P12, p12Path}} {
			if f.want && exists(f.path) {
				return clierr.Usagef("%s already exists", f.path).Hintf("add --force to replace it, or --out NAME to write other files")
			}
		}
	}

	if !reused {
		if err := r.insideConstraints(ca, p.SANs); err != nil {
			return err
		}
		p.KeyType, p.Now, p.Rand = o.KeyType, r.now, o.Rand
		p.Days = o.Days
		if p.Days == 0 {
			p.Days = DefaultLeafDays
		}
		if _, notAfter := validity(p.Now, p.Days); notAfter.After(ca.Cert.NotAfter) {
			r.warnf("the %s certificate would outlive its CA, which expires on %s: clients stop accepting it then", what, ca.Cert.NotAfter.UTC().Format(time.DateOnly))
		}
		for _, s := range p.SANs {
			if s.Warn != "" {
				r.warnf("%s", s.Warn)
			}
		}
		leaf, err := ctxio.Do(r.ctx, func() (*Issued, error) { return ca.issue(p) })
		if err != nil {
			return err
		}
		keyPEM, err := encodeKey(leaf.Key)
		if err != nil {
			return err
		}
		if err := r.write(keyPath, keyPEM, keyFileMode); err != nil {
			return err
		}
		if err := r.write(certPath, leaf.CertPEM(), certFileMode); err != nil {
			return err
		}
		cert, certPEM, key = leaf.Cert, leaf.CertPEM(), leaf.Key
		note := describeValidity(cert, r.now)
		if p.Client {
			note = "CN=" + p.CommonName + ", " + note
		} else {
			note = strings.Join(sanStrings(cert), ", ") + ", " + note
		}
		r.files = append(r.files, written{what, certPath, note}, written{what + " key", keyPath, "mode 0600"})
	}
	if wantChain {
		data := append(append([]byte{}, certPEM...), pemCert(ca.Cert.Raw)...)
		if err := r.write(chainPath, data, certFileMode); err != nil {
			return err
		}
		r.files = append(r.files, written{what + " chain", chainPath, "certificate followed by the CA"})
	}
	if wantP12 {
		enc, kind := pkcs12.Modern2023, "AES-256, PBKDF2-SHA-256"
		if o.P12Legacy {
			// 3DES rather than RC2: old Java, Windows and Android read it,
			// and so does OpenSSL 3 without its legacy provider.
			enc, kind = pkcs12.LegacyDES, "legacy 3DES, SHA-1 MAC"
		}
		pfx, err := enc.Encode(key, cert, []*x509.Certificate{ca.Cert}, o.P12Password)
		if err != nil {
			return fmt.Errorf("encode PKCS#12: %w", err)
		}
		// The bundle holds the private key, so it is as private as the key.
		if err := r.write(p12Path, pfx, keyFileMode); err != nil {
			return err
		}
		r.files = append(r.files, written{what + " PKCS#12", p12Path, kind + ", mode 0600"})
	}
	return nil
}

// write is writeFile with --force, turning a file that appeared meanwhile
// into a usage error that names the fix.
func (r *runner) write(path string, data []byte, perm os.FileMode) error {
	err := writeFile(path, data, perm, r.o.Force)
	if errors.Is(err, ErrExists) {
		return clierr.Usagef("%s already exists", path).Hintf("add --force to replace it")
	}
	return err
}

func (r *runner) warnf(format string, args ...any) {
	if r.o.IO != nil {
		r.o.IO.Warnf(format, args...)
	}
}
