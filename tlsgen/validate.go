package tlsgen

// Checking Options before anything is written: every bad flag is a
// usage error (exit 2) that names the fix.

import (
	"errors"
	"strings"

	"github.com/mqtk/mqtk/internal/clierr"
)

// validate checks the options before anything is written.
func (r *runner) validate() error {
	o := r.o
	if o.Days < 0 {
		return clierr.Usagef("--days %d is negative", o.Days).Hintf("give a number of days, e.g. --days %d", DefaultDays(o.Command))
	}
	if o.Days > 100*366 {
		return clierr.Usagef("--days %d is more than 100 years", o.Days).Hintf("give at most %d", 100*366)
	}
	if o.Out != "" && (strings.ContainsAny(o.Out, `/\`) || o.Out == "." || o.Out == ".." || o.Out == "ca") {
		return clierr.Usagef("--out %q must be a plain file name without a directory (and not \"ca\")", o.Out).Hintf("use --dir for the directory")
	}
	switch o.Command {
	case CmdServer:
		if len(o.Names) == 0 {
			return clierr.Usagef("tlsgen server needs at least one name").Hintf("give one or more names, e.g. mqtk tlsgen server localhost 127.0.0.1 broker.lan")
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
			return clierr.Usagef("--name-constraint applies when a CA is made, and %s already has one", r.dir).
				Hintf("run mqtk tlsgen ca --force --name-constraint ... to replace it")
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
					return clierr.Usagef("--name-constraint %s would forbid the local server name %s that mqtk tlsgen issues", strings.Join(o.NameConstraints, ","), s.Value).
						Hintf("make the CA with mqtk tlsgen ca --name-constraint ..., then mqtk tlsgen server NAME... with names inside it")
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
		return clierr.Usagef("--p12-legacy without --p12: it changes how --p12 encrypts").Hintf("add --p12")
	}
	// Refused rather than warned about, as step does without --insecure:
	// the bundle holds the private key, and with no password anyone who
	// gets a copy of the file (a backup, a chat upload) can use it.
	if o.P12 && o.P12Password == "" {
		return clierr.Usagef("--p12 with an empty password would let anyone who gets a copy of the bundle use its private key").
			Hintf("give a password with --p12-password or MQTK_P12_PASSWORD").
			Hintf("for a client that takes no password, use the .pem and -key.pem files")
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
		return clierr.Usagef("tlsgen client needs the client's name (its CN, which brokers with use_identity_as_username take as the MQTT user name)").
			Hintf("give the name, e.g. mqtk tlsgen client sensor-1")
	}
	if len(cn) > 64 {
		return clierr.Usagef("client name %q is longer than 64 characters, the limit for a certificate CN", cn).Hintf("give a shorter name")
	}
	for _, c := range cn {
		if c < 0x20 || c == 0x7f {
			return clierr.Usagef("client name %q contains a control character", cn).Hintf("use printable characters")
		}
	}
	return nil
}
