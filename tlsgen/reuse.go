package tlsgen

// Running tlsgen again: when an existing certificate may be kept, and
// refusing flags that disagree with the CA or certificates that would be
// kept, each with the command that gets what was asked.

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

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
	return &clierr.Error{
		Kind:  clierr.KindUsage,
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
	return clierr.Usagef("the CA in %s already exists with %s, and is kept", r.dir, strings.Join(diffs, "; ")).
		Hintf("add --force to replace it (%s%s; every certificate the old CA signed stops working)", replace, then).
		Hintf("or leave out %s to use it as it is", strings.Join(flags, ", "))
}
