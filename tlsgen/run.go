package tlsgen

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/mqtk/mqtk/internal/ctxio"
	"github.com/mqtk/mqtk/internal/mqttconn"
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
	var known *mqttconn.Error
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
	return &mqttconn.Error{Kind: mqttconn.KindOther, Err: err, Hints: []string{hint}}
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

// validate checks the options before anything is written.
func (r *runner) validate() error {
	o := r.o
	if o.Days < 0 {
		return mqttconn.Usagef("--days %d is negative: give a number of days, e.g. --days %d", o.Days, DefaultDays(o.Command))
	}
	if o.Days > 100*366 {
		return mqttconn.Usagef("--days %d is more than 100 years: give at most %d", o.Days, 100*366)
	}
	if o.Out != "" && (strings.ContainsAny(o.Out, `/\`) || o.Out == "." || o.Out == ".." || o.Out == "ca") {
		return mqttconn.Usagef("--out %q must be a plain file name without a directory (and not \"ca\"): use --dir for the directory", o.Out)
	}
	switch o.Command {
	case CmdServer:
		if len(o.Names) == 0 {
			return mqttconn.Usagef("tlsgen server needs at least one name: e.g. mqtk tlsgen server localhost 127.0.0.1 broker.lan")
		}
		sans, err := classifyAll(o.Names)
		if err != nil {
			return err
		}
		r.sans = sans
	case CmdClient:
		if err := checkCN(o.CommonName); err != nil {
			return err
		}
	case CmdAll:
		if o.CommonName != "" {
			if err := checkCN(o.CommonName); err != nil {
				return err
			}
		}
	}
	if o.Command != CmdCA && o.Command != CmdAll && len(o.NameConstraints) > 0 {
		if _, err := loadAuthority(r.dir, replaceCACommand(r.dir)); err == nil {
			return mqttconn.Usagef("--name-constraint applies when a CA is made, and %s already has one: run mqtk tlsgen ca --force --name-constraint ... to replace it", r.dir)
		}
	}
	for _, c := range o.NameConstraints {
		if err := checkConstraint(c); err != nil {
			return err
		}
	}
	// The one-shot command issues for the local names right after making
	// the CA: refuse up front, before any file is written, when the
	// constraint would forbid them.
	if o.Command == CmdAll && len(o.NameConstraints) > 0 {
		if _, err := loadAuthority(r.dir, replaceCACommand(r.dir)); errors.Is(err, ErrNoCA) || o.Force {
			sans, _ := classifyAll(defaultServerNames(o.Hostname))
			for _, s := range sans {
				if !permitted(o.NameConstraints, s) {
					return mqttconn.Usagef("--name-constraint %s would forbid the local server name %s that mqtk tlsgen issues: make the CA with mqtk tlsgen ca --name-constraint ..., then mqtk tlsgen server NAME... with names inside it", strings.Join(o.NameConstraints, ","), s.Value)
				}
			}
		}
	}
	if o.KeyType == Ed25519 {
		r.warnf("ed25519 keys are not supported by many MQTT clients and TLS stacks (older OpenSSL, Java, some embedded and mobile clients); use the default ecdsa-p256 unless every client is known to cope")
	}
	if o.Command != CmdCA && o.Days > MaxQuietLeaf {
		r.warnf("--days %d: Apple platforms and browsers reject server certificates valid for more than %d days, and many clients cap at 398", o.Days, MaxQuietLeaf)
	}
	if o.P12Legacy && !o.P12 {
		return mqttconn.Usagef("--p12-legacy changes how --p12 encrypts: add --p12")
	}
	// Refused rather than warned about, as step does without --insecure:
	// the bundle holds the private key, and with no password anyone who
	// gets a copy of the file (a backup, a chat upload) can use it.
	if o.P12 && o.P12Password == "" {
		return mqttconn.Usagef("--p12 with an empty password would let anyone who gets a copy of the bundle use its private key: give a password with --p12-password or MQTK_P12_PASSWORD (a client that takes no password can use the .pem and -key.pem files)")
	}
	return nil
}

// DefaultDays is the validity --days defaults to for a command: ten years
// for a CA, 397 days for certificates.
func DefaultDays(c Command) int {
	if c == CmdCA {
		return DefaultCADays
	}
	return DefaultLeafDays
}

func checkCN(cn string) error {
	if strings.TrimSpace(cn) == "" {
		return mqttconn.Usagef("tlsgen client needs the client's name (its CN, which brokers with use_identity_as_username take as the MQTT user name): e.g. mqtk tlsgen client sensor-1")
	}
	if len(cn) > 64 {
		return mqttconn.Usagef("client name %q is longer than 64 characters, the limit for a certificate CN: give a shorter name", cn)
	}
	for _, c := range cn {
		if c < 0x20 || c == 0x7f {
			return mqttconn.Usagef("client name %q contains a control character: use printable characters", cn)
		}
	}
	return nil
}

func checkConstraint(c string) error {
	if strings.Contains(c, "/") {
		if _, _, err := netParseCIDR(c); err != nil {
			return mqttconn.Usagef("--name-constraint %q is not a valid IP range: give a domain (example.com) or a CIDR (192.168.1.0/24)", c)
		}
		return nil
	}
	d := strings.TrimPrefix(strings.ToLower(c), ".")
	if err := checkHostname(d); err != nil {
		return mqttconn.Usagef("--name-constraint %q is not a domain: %v; give e.g. --name-constraint example.com", c, err)
	}
	return nil
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
			return nil, mqttconn.Usagef("the CA %s expired on %s: replace it with %s (every certificate it signed must then be reissued)", certPath, existing.Cert.NotAfter.UTC().Format(time.DateOnly), replaceCACommand(r.dir))
		}
		if err := r.caConflicts(existing.Cert); err != nil {
			return nil, err
		}
		r.files = append(r.files, written{"CA", certPath, "reused, " + describeValidity(existing.Cert, r.now)})
		return existing, nil
	case err != nil && !errors.Is(err, ErrNoCA) && !replace:
		return nil, mqttconn.Usagef("%v", err)
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
			return mqttconn.Usagef("%s already exists: add --force to replace it, or --out NAME to write NAME.pem instead", existing)
		}
		c, k, why := r.reusable(ca, certPath, keyPath, p)
		if c == nil {
			// --force on this command would replace the CA as well, so
			// name the command that reissues just this certificate.
			return mqttconn.Usagef("%s cannot be reused: %s; reissue it with %s (keeps the CA), or run mqtk tlsgen --force to replace the CA and every certificate", certPath, why, r.reissueCommand(p))
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
				return mqttconn.Usagef("%s already exists: add --force to replace it, or --out NAME to write other files", f.path)
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
		return mqttconn.Usagef("%s already exists: add --force to replace it", path)
	}
	return err
}

// reusable returns the existing pair when it may be kept, else a reason.
func (r *runner) reusable(ca *Authority, certPath, keyPath string, p leafParams) (*x509.Certificate, crypto.Signer, string) {
	certs, err := readCertFile(certPath)
	if err != nil {
		return nil, nil, err.Error()
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, "its key is unreadable or missing (" + err.Error() + ")"
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, "its key is unreadable (" + err.Error() + ")"
	}
	if !sameKey(certs[0], key) {
		return nil, nil, "its key does not match it"
	}
	if err := ca.check(certs[0], r.now); err != nil {
		if !r.now.Before(certs[0].NotAfter) {
			return nil, nil, "it expired on " + certs[0].NotAfter.UTC().Format(time.DateOnly)
		}
		return nil, nil, "it was not signed by the CA in " + r.dir + " (was the CA replaced?)"
	}
	// The same check EnsureLocal makes for mqtk broker --tls: a host
	// renamed since the last run would otherwise get a certificate that
	// clients reject for its new name.
	if missing := uncovered(certs[0], p.SANs); !p.Client && len(missing) > 0 {
		return nil, nil, "it does not cover " + strings.Join(missing, ", ") + " (has this machine's host name changed?)"
	}
	return certs[0], key, ""
}

// reissueCommand is the command that reissues just the certificate p
// describes, with the explicit --key-type and --days of this run, keeping
// the CA (which --force on the one-shot command would replace).
func (r *runner) reissueCommand(p leafParams) string {
	cmd := "mqtk tlsgen client " + shellQuote(p.CommonName)
	if !p.Client {
		cmd = "mqtk tlsgen server " + sanArgs(p.SANs)
	}
	if r.o.KeyType != "" {
		cmd += " --key-type " + string(r.o.KeyType)
	}
	if r.o.Days != 0 {
		cmd += fmt.Sprintf(" --days %d", r.o.Days)
	}
	cmd += " --force"
	if r.dir != DefaultDir {
		cmd += " --dir " + shellQuote(r.dir)
	}
	return cmd
}

// reuseConflicts stops the one-shot command when an explicit --cn,
// --key-type or --days disagrees with a certificate it would reuse.
//
// mkcert reissues on every run; step refuses to overwrite without --force.
// mqtk tlsgen follows step: it promises never to overwrite without
// --force, the existing client certificate may already sit on a device,
// and --force here would replace the CA too. Reusing quietly, as before,
// was worse than either: exit 0 with CN mqtk-client after --cn bob. So
// the run stops before writing anything and names, per certificate, the
// command that reissues just that one and keeps the CA.
func (r *runner) reuseConflicts(leaves map[string]leafParams) error {
	o := r.o
	if o.Force || (o.CommonName == "" && o.KeyType == "" && o.Days == 0) {
		return nil
	}
	var diffs, hints []string
	flags := map[string]bool{}
	for _, base := range []string{"server", "client"} {
		p, ok := leaves[base]
		if !ok {
			continue
		}
		certs, err := readCertFile(filepath.Join(r.dir, base+".pem"))
		if err != nil {
			continue // missing or unreadable: leaf issues it or says why
		}
		c := certs[0]
		var d []string
		if p.Client && o.CommonName != "" && c.Subject.CommonName != o.CommonName {
			d = append(d, fmt.Sprintf("CN %s, not %s", c.Subject.CommonName, o.CommonName))
			flags["--cn"] = true
		}
		if o.KeyType != "" && keyTypeOf(c.PublicKey) != o.KeyType {
			d = append(d, fmt.Sprintf("an %s key, not %s", keyDescription(c.PublicKey), o.KeyType))
			flags["--key-type"] = true
		}
		if o.Days != 0 && validDays(c) != o.Days {
			d = append(d, fmt.Sprintf("a validity of %d days, not %d", validDays(c), o.Days))
			flags["--days"] = true
		}
		if len(d) > 0 {
			diffs = append(diffs, filepath.Join(r.dir, base+".pem")+" has "+strings.Join(d, ", "))
			hints = append(hints, fmt.Sprintf("reissue just the %s certificate, keeping the CA: %s", base, r.reissueCommand(p)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	var given []string
	for _, f := range []string{"--cn", "--key-type", "--days"} {
		if flags[f] {
			given = append(given, f)
		}
	}
	hints = append(hints, fmt.Sprintf("or leave out %s to keep the certificates as they are", strings.Join(given, ", ")))
	return &mqttconn.Error{
		Kind:  mqttconn.KindUsage,
		Err:   fmt.Errorf("mqtk tlsgen reuses the certificates in %s, and they differ from what was asked: %s", r.dir, strings.Join(diffs, "; ")),
		Hints: hints,
	}
}

// caConflicts refuses flags that describe another CA than the one in the
// directory. The CA is kept (replacing it breaks every certificate it
// signed), but a warning and exit 0 would let a script believe, say, that
// its CA may now sign only for one domain.
func (r *runner) caConflicts(ca *x509.Certificate) error {
	o := r.o
	var diffs, flags []string
	replace := "mqtk tlsgen ca --force"
	if o.Command == CmdCA {
		if o.KeyType != "" && keyTypeOf(ca.PublicKey) != o.KeyType {
			diffs = append(diffs, fmt.Sprintf("an %s key, not %s", keyDescription(ca.PublicKey), o.KeyType))
			flags = append(flags, "--key-type")
			replace += " --key-type " + string(o.KeyType)
		}
		if o.Days != 0 && validDays(ca) != o.Days {
			diffs = append(diffs, fmt.Sprintf("a validity of %d days, not %d", validDays(ca), o.Days))
			flags = append(flags, "--days")
			replace += fmt.Sprintf(" --days %d", o.Days)
		}
		if o.CommonName != "" && ca.Subject.CommonName != o.CommonName {
			diffs = append(diffs, fmt.Sprintf("the name %q, not %q", ca.Subject.CommonName, o.CommonName))
			flags = append(flags, "--cn")
			replace += " --cn " + shellQuote(o.CommonName)
		}
	}
	if len(o.NameConstraints) > 0 && !sameConstraints(caConstraints(ca), o.NameConstraints) {
		have := "no name constraint (it may sign for any name)"
		if c := caConstraints(ca); len(c) > 0 {
			have = "the name constraint " + strings.Join(c, ", ")
		}
		diffs = append(diffs, have+", not "+strings.Join(o.NameConstraints, ", "))
		flags = append(flags, "--name-constraint")
		for _, c := range o.NameConstraints {
			replace += " --name-constraint " + shellQuote(c)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	if r.dir != DefaultDir {
		replace += " --dir " + shellQuote(r.dir)
	}
	then := ""
	if o.Command == CmdAll {
		then = ", then issue certificates with mqtk tlsgen server NAME... and mqtk tlsgen client CN"
	}
	return mqttconn.Usagef("the CA in %s already exists with %s, and is kept: add --force to replace it (%s%s; every certificate the old CA signed stops working), or leave out %s to use it as it is",
		r.dir, strings.Join(diffs, "; "), replace, then, strings.Join(flags, ", "))
}

// caConstraints lists the CA's permitted domains and IP ranges in the
// form --name-constraint takes.
func caConstraints(ca *x509.Certificate) []string {
	out := append([]string{}, ca.PermittedDNSDomains...)
	for _, n := range ca.PermittedIPRanges {
		out = append(out, n.String())
	}
	return out
}

// sameConstraints compares constraint lists as sets, after the
// normalisation newAuthority applies.
func sameConstraints(have, want []string) bool {
	norm := func(list []string) map[string]bool {
		m := map[string]bool{}
		for _, c := range list {
			if _, n, err := net.ParseCIDR(c); err == nil {
				m[n.String()] = true
			} else {
				m[strings.TrimPrefix(strings.ToLower(c), ".")] = true
			}
		}
		return m
	}
	h, w := norm(have), norm(want)
	if len(h) != len(w) {
		return false
	}
	for c := range w {
		if !h[c] {
			return false
		}
	}
	return true
}

// insideConstraints refuses, before a key is made, names that a
// name-constrained CA may not sign: that is a bad argument, and the fix is
// another name or another CA, not anything at run time.
func (r *runner) insideConstraints(ca *Authority, sans []SAN) error {
	cons := caConstraints(ca.Cert)
	if len(cons) == 0 {
		return nil
	}
	for _, s := range sans {
		if !permitted(cons, s) {
			return mqttconn.Usagef("the CA in %s is name-constrained to %s and may not sign %s: give names inside %s, or issue from a CA without --name-constraint in another --dir",
				r.dir, strings.Join(cons, ", "), s.Value, strings.Join(cons, ", "))
		}
	}
	return nil
}

func sanArgs(sans []SAN) string {
	q := make([]string, len(sans))
	for i, s := range sans {
		q[i] = shellQuote(s.Value)
	}
	return strings.Join(q, " ")
}

// commonNameFor picks a CN for a server certificate: the first DNS name,
// else the first name of any kind. Go and modern clients ignore the CN, but
// older ones still show or check it.
func commonNameFor(sans []SAN) string {
	for _, s := range sans {
		if s.Kind == SANDNS || s.Kind == SANWildcard {
			return s.Value
		}
	}
	if len(sans) > 0 {
		return sans[0].Value
	}
	return ""
}

func sanStrings(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	out = append(out, c.EmailAddresses...)
	return out
}

func describeValidity(c *x509.Certificate, now time.Time) string {
	return fmt.Sprintf("valid until %s (%d days)", c.NotAfter.UTC().Format(time.DateOnly), daysLeft(c.NotAfter, now))
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

func (r *runner) warnf(format string, args ...any) {
	if r.o.IO != nil {
		r.o.IO.Warnf(format, args...)
	}
}

// permitted mirrors RFC 5280 name-constraint matching for what we issue: a
// DNS name is inside a domain when it equals it or ends in "."+domain; an IP
// inside a range; a kind with no constraint of its own is unconstrained.
func permitted(constraints []string, s SAN) bool {
	var domains []string
	var nets []*net.IPNet
	for _, c := range constraints {
		if _, n, err := net.ParseCIDR(c); err == nil {
			nets = append(nets, n)
		} else {
			domains = append(domains, strings.TrimPrefix(strings.ToLower(c), "."))
		}
	}
	switch s.Kind {
	case SANDNS, SANWildcard:
		if len(domains) == 0 {
			return true
		}
		name := strings.TrimPrefix(s.Value, "*.")
		for _, d := range domains {
			if name == d || strings.HasSuffix(name, "."+d) {
				return true
			}
		}
		return false
	case SANIP:
		if len(nets) == 0 {
			return true
		}
		for _, n := range nets {
			if n.Contains(s.IP) {
				return true
			}
		}
		return false
	}
	return true
}
