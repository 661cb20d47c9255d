package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// probeTLS reports, for a TLS listener (mqtts:// or wss://), the versions
// the broker accepts, what the handshake with the user's settings
// negotiated (version, cipher suite, ALPN), whether the chain verifies,
// and the certificates with their names. Its handshakes reach the broker
// as the other probes' connections do (-A, --proxy), with the TLS
// configuration of the shared layer; each is a handshake alone, with no
// MQTT or WebSocket after it.
func (p *prober) probeTLS(ctx context.Context) error {
	if p.cfg.Scheme != "tls" && p.cfg.Scheme != "wss" {
		p.add(Row{ID: "tls", Group: "tls", Name: "TLS", Verdict: NA, Value: "not a TLS connection"})
		return nil
	}
	base, err := mqttconn.TLSConfig(&p.cfg)
	if err != nil {
		return err
	}
	if len(base.NextProtos) == 0 {
		// Offer the protocol the listener speaks inside TLS, so that the
		// row says whether the broker answers ALPN at all (AWS IoT, for
		// one, routes by it): "mqtt", or HTTP/1.1 for the WebSocket
		// upgrade of wss://.
		base.NextProtos = []string{"mqtt"}
		if p.cfg.Scheme == "wss" {
			base.NextProtos = []string{"http/1.1"}
		}
	}
	handshake := func(tc *tls.Config) (tls.ConnectionState, error) {
		ctx, cancel := context.WithTimeout(ctx, p.wait)
		defer cancel()
		c, err := mqttconn.DialTLS(ctx, p.cfg, tc)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		return c.ConnectionState(), nil
	}

	// Versions, each alone; verification off, since only the version is
	// in question here.
	var accepted, refused []string
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13} {
		tc := base.Clone()
		tc.MinVersion, tc.MaxVersion, tc.InsecureSkipVerify = v, v, true
		if _, err := handshake(tc); err != nil {
			refused = append(refused, tls.VersionName(v))
		} else {
			accepted = append(accepted, tls.VersionName(v))
		}
	}
	r := Row{ID: "tls.versions", Name: "TLS versions accepted", Verdict: Info, Value: strings.Join(accepted, ", ")}
	if len(accepted) == 0 {
		r.Value = "none that Go offers"
	}
	if len(refused) > 0 {
		r.Note = "refused: " + strings.Join(refused, ", ")
	}
	p.add(r)

	// The handshake as the user's settings make it, verified unless
	// --insecure.
	st, verr := handshake(base)
	verified := Row{ID: "tls.verified", Name: "certificate verifies", Verdict: Yes, Value: "against the trusted CAs, for " + base.ServerName}
	switch {
	case verr != nil:
		verified.Verdict, verified.Value = No, verr.Error()
		insecure := base.Clone()
		insecure.InsecureSkipVerify = true
		if st, err = handshake(insecure); err != nil {
			p.add(verified)
			return nil
		}
	case base.InsecureSkipVerify:
		verified.Verdict, verified.Value = NA, "not checked (--insecure)"
	}
	p.add(verified)
	p.add(Row{ID: "tls.negotiated", Name: "negotiated", Verdict: Info,
		Value: fmt.Sprintf("%s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))})
	alpn := Row{ID: "tls.alpn", Name: "ALPN", Verdict: Yes, Value: fmt.Sprintf("%q chosen (offered %s)", st.NegotiatedProtocol, strings.Join(base.NextProtos, ","))}
	if st.NegotiatedProtocol == "" {
		alpn.Verdict, alpn.Value = No, fmt.Sprintf("none chosen (offered %s)", strings.Join(base.NextProtos, ","))
	}
	p.add(alpn)
	for i, c := range st.PeerCertificates {
		p.add(Row{ID: fmt.Sprintf("tls.chain.%d", i), Name: fmt.Sprintf("certificate %d", i), Verdict: Info,
			Value: describeCert(c), Note: "expires " + c.NotAfter.UTC().Format(time.DateOnly), Volatile: true})
	}
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		var names []string
		names = append(names, leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		p.add(Row{ID: "tls.names", Name: "server names (SAN)", Verdict: Info, Value: strings.Join(names, ", ")})
	}
	return nil
}

// describeCert is "CN=x, issued by CN=y" with a note for CAs.
func describeCert(c *x509.Certificate) string {
	s := fmt.Sprintf("%s, issued by %s", c.Subject.String(), c.Issuer.String())
	if c.IsCA {
		s += " (CA)"
	}
	return s
}
