package tlsgen

// Name constraints (RFC 5280 section 4.2.1.10) on a CA made with
// --name-constraint: checking the flag, comparing a CA's constraints with
// the flags, and refusing names the CA may not sign.

import (
	"crypto/x509"
	"net"
	"strings"

	"github.com/mqtk/mqtk/internal/clierr"
)

func checkConstraint(c string) error {
	if strings.Contains(c, "/") {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return clierr.Usagef("--name-constraint %q is not a valid IP range", c).Hintf("give a domain (example.com) or a CIDR (192.168.1.0/24)")
		}
		return nil
	}
	d := strings.TrimPrefix(strings.ToLower(c), ".")
	if err := checkHostname(d); err != nil {
		return clierr.Usagef("--name-constraint %q is not a domain: %w", c, err).Hintf("give e.g. --name-constraint example.com")
	}
	return nil
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
			return clierr.Usagef("the CA in %s is name-constrained to %s and may not sign %s", r.dir, strings.Join(cons, ", "), s.Value).
				Hintf("give names inside %s, or issue from a CA without --name-constraint in another --dir", strings.Join(cons, ", "))
		}
	}
	return nil
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
