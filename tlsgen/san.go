package tlsgen

import (
	"crypto/x509"
	"errors"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"github.com/mqtk/mqtk/internal/clierr"
)

// SANKind is the kind of subjectAltName entry a name becomes.
type SANKind string

// The kinds a name given to `tlsgen server` is classified as.
const (
	SANDNS      SANKind = "dns"
	SANWildcard SANKind = "wildcard" // a DNS SAN starting with "*."
	SANIP       SANKind = "ip"
	SANURI      SANKind = "uri"
	SANEmail    SANKind = "email"
)

// SAN is one classified name.
type SAN struct {
	Kind  SANKind
	Value string // normalised: lower-case DNS, canonical IP text
	IP    net.IP
	URI   *url.URL
	Warn  string // a caveat worth telling the user, or ""
}

// ClassifyName decides what kind of SAN a command-line name is. IP addresses
// must become IP SANs, not DNS SANs or a CN, or clients connecting by address
// reject the certificate (MQTT.js#1077, mosquitto#2154).
func ClassifyName(name string) (SAN, error) {
	s := strings.TrimSpace(name)
	if s == "" {
		return SAN{}, clierr.Usagef("empty certificate name").Hintf("give a host name, IP address, URI or email address")
	}
	// An IPv6 address may come bracketed, as in a URL.
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		return SAN{Kind: SANIP, Value: ip.String(), IP: ip}, nil
	}
	if strings.Contains(s, "/") && strings.Contains(s, ":") {
		if _, _, err := net.ParseCIDR(s); err == nil {
			return SAN{}, clierr.Usagef("%q is an address range; certificates name single addresses", s).Hintf("give each IP address")
		}
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return SAN{}, clierr.Usagef("%q is not a valid URI", s).Hintf("give scheme://host/path, e.g. spiffe://example.org/broker")
		}
		return SAN{Kind: SANURI, Value: u.String(), URI: u}, nil
	}
	if strings.HasPrefix(strings.ToLower(s), "urn:") {
		u, err := url.Parse(s)
		if err != nil || u.Opaque == "" {
			return SAN{}, clierr.Usagef("%q is not a valid URN", s).Hintf("give urn:NID:NSS")
		}
		return SAN{Kind: SANURI, Value: u.String(), URI: u}, nil
	}
	if i := strings.LastIndex(s, ":"); i > 0 && !strings.Contains(s, "@") {
		if port := s[i+1:]; port != "" && strings.Trim(port, "0123456789") == "" {
			return SAN{}, clierr.Usagef("%q has a port: certificates name hosts, not ports", s).Hintf("give %q", s[:i])
		}
		return SAN{}, clierr.Usagef("%q is not a host name, IP address, URI or email address (it contains ':')", s)
	}
	if strings.Contains(s, "@") {
		a, err := mail.ParseAddress(s)
		if err != nil || a.Address != s || a.Name != "" {
			return SAN{}, clierr.Usagef("%q is not a valid email address", s).Hintf("give it as user@example.com")
		}
		return SAN{Kind: SANEmail, Value: s}, nil
	}
	host := strings.ToLower(strings.TrimSuffix(s, "."))
	if strings.HasPrefix(host, "*.") {
		rest := host[2:]
		if err := checkHostname(rest); err != nil {
			return SAN{}, clierr.Usagef("%q is not a valid wildcard name: %w", s, err)
		}
		san := SAN{Kind: SANWildcard, Value: host}
		if !strings.Contains(rest, ".") {
			san.Warn = "a wildcard directly under a top-level name (" + host + ") is rejected by many clients; prefer *.sub." + rest
		} else {
			san.Warn = host + " matches one label only: it covers x." + rest + " but neither " + rest + " nor a.b." + rest
		}
		return san, nil
	}
	if strings.Contains(host, "*") {
		return SAN{}, clierr.Usagef("%q is not a valid name: a wildcard is allowed only as the whole left-most label, as in *.example.com", s)
	}
	if err := checkHostname(host); err != nil {
		return SAN{}, clierr.Usagef("%q is not a valid host name: %w", s, err)
	}
	return SAN{Kind: SANDNS, Value: host}, nil
}

// checkHostname checks a lower-case DNS name (without a wildcard) against
// the RFC 1035/1123 shape clients enforce. Underscores are allowed because
// some service names use them and Go accepts them.
func checkHostname(h string) error {
	if h == "" {
		return errors.New("the name is empty")
	}
	if len(h) > 253 {
		return errors.New("it is longer than 253 characters")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return errors.New("it has an empty label (two dots in a row, or a leading dot)")
		}
		if len(label) > 63 {
			return errors.New("the label " + label[:10] + "... is longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("the label " + label + " starts or ends with '-'")
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			case r > 127:
				// Callers wrap this with %w, so the hint reaches the user.
				return clierr.Usagef("it contains non-ASCII characters").Hintf("give the punycode (xn--) form")
			default:
				return errors.New("it contains the character " + strconv.QuoteRune(r) + "; host names use letters, digits, '-' and '.'")
			}
		}
	}
	return nil
}

// classifyAll classifies names, dropping duplicates while keeping order.
func classifyAll(names []string) ([]SAN, error) {
	var out []SAN
	seen := map[string]bool{}
	for _, n := range names {
		san, err := ClassifyName(n)
		if err != nil {
			return nil, err
		}
		key := string(san.Kind) + " " + san.Value
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, san)
	}
	return out, nil
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
