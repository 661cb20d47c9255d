package mqttconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

// diagnose turns a failure to connect into a classified *Error whose
// message names the cause and whose hints say what to try. It is the one
// place where connection failures are classified, so that every command
// prints and exits the same way. w may be nil (the transport never opened).
func diagnose(cfg *Config, err error, w *watchConn, st *connState) *Error {
	op := "connect to " + cfg.String()
	var ce *Error
	if errors.As(err, &ce) {
		if ce.Op == "" {
			ce.Op = op
		}
		return ce
	}
	e := &Error{Kind: KindNetwork, Op: op, Err: err}
	tlsOn := cfg.Scheme == "tls" || cfg.Scheme == "wss"
	addr := cfg.Addr()

	// TLS verification failures first: they are the most specific.
	var hostErr x509.HostnameError
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	alert, isAlert := remoteAlert(err)
	var hs *handshakeError
	var dnsErr *net.DNSError
	var wsErr *wsStatusError
	var upClosed *upgradeClosedError
	switch {
	case errors.As(err, &hostErr):
		e.Kind = KindTLS
		names := certNames(hostErr.Certificate)
		e.Err = fmt.Errorf("the server certificate is for %s, not %q", names, hostErr.Host)
		// The reissue command keeps the names the certificate has, so
		// following the hint does not break clients that use them.
		reissue := append([]string{hostErr.Host}, certNameList(hostErr.Certificate)...)
		e.Hints = []string{fmt.Sprintf("connect with -h %s or reissue with mqtk tlsgen server %s --force (add --dir DIR where its CA is not in ./certs)",
			firstName(hostErr.Certificate, cfg.Host), strings.Join(reissue, " "))}
	case errors.As(err, &unknownCA):
		e.Kind = KindTLS
		issuer := ""
		if c := unknownCA.Cert; c != nil {
			issuer = fmt.Sprintf(" (issuer %q", c.Issuer.String())
			// Every CA mqtk makes on one host has the same name, so a
			// --cafile from another run looks right by name alone: the
			// key id tells them apart (tlsgen inspect shows it).
			// When the broker sends its CA along (mosquitto does), the
			// certificate left unverified is that CA itself.
			kid := c.AuthorityKeyId
			if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) {
				kid = c.SubjectKeyId
			}
			if len(kid) > 0 {
				issuer += fmt.Sprintf(", key id %X", kid[:min(len(kid), 8)])
			}
			issuer += ")"
		}
		e.Err = fmt.Errorf("the server certificate is signed by an unknown authority%s", issuer)
		e.Hints = []string{"give the CA certificate that signed it with --cafile (or --capath); --insecure skips verification, for tests only"}
		if c := unknownCA.Cert; c != nil && strings.HasPrefix(c.Issuer.CommonName, "mqtk local CA") {
			e.Hints = append(e.Hints, "a CA made by mqtk: use the ca.pem from the directory that issued the broker's certificate ($XDG_DATA_HOME/mqtk/tls/ca.pem, or ~/.local/share/mqtk/tls/ca.pem, for mqtk broker --tls); a CA replaced since needs the new ca.pem")
		}
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		e.Kind = KindTLS
		c := invalid.Cert
		now := time.Now().UTC().Format(time.RFC3339)
		if c != nil && time.Now().Before(c.NotBefore) {
			e.Err = fmt.Errorf("the server certificate is not valid yet: valid from %s to %s, now %s",
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now)
		} else if c != nil {
			e.Err = fmt.Errorf("the server certificate expired: valid from %s to %s, now %s",
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now)
		} else {
			e.Err = fmt.Errorf("the server certificate has expired or is not valid yet")
		}
		reissue := "mqtk tlsgen server NAME... --force"
		if names := certNameList(c); len(names) > 0 {
			reissue = "mqtk tlsgen server " + strings.Join(names, " ") + " --force"
		}
		e.Hints = []string{"reissue the server certificate with " + reissue + " (add --dir DIR where its CA is not in ./certs), or check the clocks"}
	case errors.As(err, &invalid):
		e.Kind = KindTLS
		e.Err = fmt.Errorf("the server certificate is not valid: %v", invalid)
	case isAlert:
		e.Kind = KindTLS
		switch {
		// certificate_required (TLS 1.3); handshake_failure is what TLS 1.2 servers send
		case strings.Contains(alert, "certificate required"), strings.Contains(alert, "handshake failure"):
			if cfg.TLS.CertFile == "" {
				e.Err = fmt.Errorf("the broker requires a client certificate (TLS alert: %v)", err)
				e.Hints = []string{"give a client certificate and its key with --cert and --key"}
			} else {
				e.Err = fmt.Errorf("TLS handshake failed: %v", err)
			}
		case strings.Contains(alert, "certificate"):
			e.Err = fmt.Errorf("the broker did not accept the client certificate (%v)", err)
			e.Hints = []string{"the client certificate must be signed by a CA the broker trusts (its cafile) and be valid now"}
		case strings.Contains(alert, "protocol version"):
			e.Err = fmt.Errorf("TLS handshake failed: the broker does not support the TLS version asked for (%v)", err)
			if cfg.TLS.MinVersion == "1.3" {
				e.Hints = []string{"the broker offers only older TLS: allow TLS 1.2 with --tls-version 1.2 (the default)"}
			} else {
				e.Hints = []string{"the broker offers only TLS older than 1.2, which mqtk does not accept: upgrade the broker's TLS settings"}
			}
		default:
			e.Err = fmt.Errorf("TLS handshake failed: %v", err)
		}
	case st != nil && st.certRequested.Load() && cfg.TLS.CertFile == "" && !isTimeout(err):
		e.Kind = KindTLS
		e.Err = fmt.Errorf("the broker requires a client certificate: it asked for one and closed the connection (%v)", err)
		e.Hints = []string{"give a client certificate and its key with --cert and --key"}
	case st != nil && st.certRequested.Load() && isEOFOrReset(err) && (w == nil || w.readNothing()):
		// TLS 1.3: the broker checks our certificate after our side of the
		// handshake is done, and rejects it by closing (the alert that
		// says why may be lost to the reset).
		e.Kind = KindTLS
		e.Err = fmt.Errorf("the broker did not accept the client certificate: it closed the connection after checking it (%v)", err)
		e.Hints = []string{"the client certificate must be signed by a CA the broker trusts (its cafile) and be valid now"}
	case errors.As(err, &hs):
		e.Kind = KindTLS
		var rh tls.RecordHeaderError
		if (errors.As(err, &rh) || isEOFOrReset(err)) && cfg.Scheme == "wss" {
			e.Err = fmt.Errorf("the server did not answer TLS: is port %d a plain WebSocket (ws://) port?", cfg.Port)
			e.Hints = []string{"use ws:// without --cafile, or the broker's wss port"}
		} else if errors.As(err, &rh) || isEOFOrReset(err) {
			e.Err = fmt.Errorf("the server did not answer TLS: is port %d plain MQTT?", cfg.Port)
			e.Hints = []string{"drop --cafile/--cert/mqtts:// or use the broker's TLS port (8883 by convention)"}
		} else {
			e.Err = fmt.Errorf("TLS handshake failed: %v", hs.err)
		}
	case errors.As(err, &dnsErr):
		e.Err = fmt.Errorf("cannot resolve host %q: %s", dnsErr.Name, dnsErr.Err)
		e.Hints = []string{"check the host name given with -h or the URL"}
	case errors.Is(err, syscall.ECONNREFUSED):
		if cfg.Scheme == "unix" {
			e.Err = fmt.Errorf("connection refused on socket %s", cfg.SocketPath)
			e.Hints = []string{"is a broker listening on that socket? try mqtk broker"}
		} else {
			e.Err = fmt.Errorf("connection refused by %s", addr)
			e.Hints = []string{fmt.Sprintf("is a broker running on %s? try mqtk broker", addr)}
		}
	case cfg.Scheme == "unix" && errors.Is(err, os.ErrNotExist):
		e.Err = fmt.Errorf("no socket at %s", cfg.SocketPath)
		e.Hints = []string{"is a broker listening on that socket? try mqtk broker"}
	case isTimeout(err):
		e.Err = fmt.Errorf("timed out after %s waiting for %s", cfg.ConnectTimeout, stage(w, tlsOn))
		e.Hints = []string{fmt.Sprintf("is %s reachable and an MQTT broker? raise --connect-timeout if the link is slow", addr)}
	case errors.As(err, &wsErr):
		e.Err = fmt.Errorf("%s at %s", wsErr.Error(), wsErr.url)
		e.Hints = []string{"check the WebSocket path (--ws-path, default /mqtt) and that the port is a WebSocket listener"}
	case errors.As(err, &upClosed) && cfg.Scheme == "wss":
		// The TLS handshake worked; the HTTP upgrade inside it did not.
		e.Err = fmt.Errorf("the server closed the connection during the WebSocket upgrade: port %d speaks TLS but is not a WebSocket listener", cfg.Port)
		e.Hints = []string{fmt.Sprintf("for MQTT over TLS on that port use mqtts://%s, or give the broker's wss port", addr),
			"check --ws-path too (default /mqtt)"}
	case w == nil && cfg.Scheme == "ws" && isEOFOrReset(err):
		// Nothing comes back to an HTTP upgrade sent to a TLS port.
		e.Err = fmt.Errorf("the server closed the connection during the WebSocket upgrade: %v", err)
		e.Hints = []string{"the port may expect TLS: use wss:// (with --cafile if needed)",
			"or it is not a WebSocket listener: check the port and --ws-path"}
	case w != nil && w.sawHTTP():
		// MQTT sent to a WebSocket listener: it answers with an HTTP error.
		scheme := "ws"
		if tlsOn {
			scheme = "wss"
		}
		e.Err = fmt.Errorf("port %d answered with HTTP: it is a WebSocket listener, not plain MQTT", cfg.Port)
		e.Hints = []string{fmt.Sprintf("connect with -L %s://%s/mqtt (adjust the path to the broker's)", scheme, addr)}
	case w != nil && !tlsOn && w.sawTLS():
		// A plain client on a TLS port: the broker's first bytes are a TLS
		// record (alert or handshake), never an MQTT CONNACK.
		e.Kind = KindTLS
		e.Err = fmt.Errorf("the server answered with TLS, not MQTT")
		e.Hints = []string{"the port expects TLS: add --cafile or use mqtts://"}
	case w != nil && !tlsOn && isEOFOrReset(err) && w.readNothing() && speaksTLS(cfg):
		// Brokers such as mosquitto close a plain connection to a TLS port
		// without a byte; a TLS handshake of our own tells that apart from
		// a broker that dropped the CONNECT.
		e.Kind = KindTLS
		e.Err = fmt.Errorf("the broker closed the connection before CONNACK: port %d expects TLS", cfg.Port)
		e.Hints = []string{"add --cafile CA.pem (or --tls for a publicly trusted certificate) or use mqtts://"}
	case w != nil && !tlsOn && isEOFOrReset(err) && w.readNothing():
		e.Err = fmt.Errorf("the broker closed the connection before CONNACK")
		e.Hints = []string{"the broker rejected the CONNECT: see its log (an unexpected client id, protocol version or packet size)"}
	case isEOFOrReset(err):
		e.Err = fmt.Errorf("the connection was closed: %v", err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		e.Err = fmt.Errorf("%s is unreachable: %v", addr, err)
		e.Hints = []string{"check the host, the network and any firewall"}
	default:
		var op *net.OpError
		if !errors.As(err, &op) {
			e.Kind = KindOther
		}
	}
	return e
}

// refused is the error for a CONNACK with a failure reason code.
func refused(cfg *Config, code byte, reasonString string) *Error {
	msg := fmt.Sprintf("the broker refused the connection: %s (0x%02X)", ReasonName(code), code)
	if reasonString != "" {
		msg += ": " + reasonString
	}
	e := &Error{Kind: KindRefused, Op: "connect to " + cfg.String(), Err: errors.New(msg), Reason: code}
	switch code {
	case 0x86:
		e.Hints = []string{"check -u/--username and the password (-P, --password-file, MQTK_PASSWORD)"}
	case 0x87:
		if cfg.Username == "" {
			e.Hints = []string{"the broker wants credentials: give -u/--username and a password"}
		} else {
			e.Hints = []string{"check the user name, password and the broker's access rules"}
		}
	case 0x84:
		e.Hints = []string{"the broker does not speak MQTT " + cfg.Version.String() + ": connect with -V 311, or -V auto to use 5 where a broker has it"}
	case 0x85:
		e.Hints = []string{"choose another client id with -i, or none to let mqtk pick one"}
	}
	return e
}

// refusedV311 is the error for an MQTT 5 CONNECT answered with a 3.1.1
// CONNACK, rc its return code: a broker that knows nothing newer than
// 3.1.1 refuses protocol level 5 that way (return code 1, unacceptable
// protocol version, as mosquitto 1.x does) and closes the connection.
// paho reads those two bytes as a truncated MQTT 5 CONNACK, which would
// otherwise read as the connection closing for no reason.
func refusedV311(cfg *Config, rc byte) *Error {
	code, ok := v3Reasons[rc]
	if !ok {
		code = 0x80 // unspecified error
	}
	e := refused(cfg, code, "")
	name := packet.ConnackName311(packet.ReasonCode(rc))
	hint := "the broker speaks MQTT 3.1.1: connect with -V 311, or -V auto to use 5 where a broker has it"
	if rc == 1 {
		e.Err = fmt.Errorf("the broker does not speak MQTT 5: it answered with an MQTT 3.1.1 CONNACK, return code 1 (%s)", name)
		e.Hints = []string{hint}
		return e
	}
	e.Err = fmt.Errorf("the broker refused the connection with an MQTT 3.1.1 CONNACK: return code %d (%s)", rc, name)
	e.Hints = append(e.Hints, hint)
	return e
}

func stage(w *watchConn, tlsOn bool) string {
	switch {
	case w == nil && tlsOn:
		return "the TCP connection and TLS handshake"
	case w == nil:
		return "the TCP connection"
	}
	return "CONNACK"
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isEOFOrReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "other names"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName+" (common name only)")
	}
	if len(names) == 0 {
		return "no host name"
	}
	for i, n := range names {
		names[i] = strconv.Quote(n)
	}
	return strings.Join(names, ", ")
}

// certNameList is the certificate's DNS names and IP addresses, unquoted.
func certNameList(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

func firstName(c *x509.Certificate, def string) string {
	if c != nil {
		if len(c.DNSNames) > 0 {
			return c.DNSNames[0]
		}
		if len(c.IPAddresses) > 0 {
			return c.IPAddresses[0].String()
		}
	}
	return def
}

// lost classifies the end of an established connection.
func lost(cfg *Config, err error) *Error {
	e := &Error{Kind: KindNetwork, Op: "connection to " + cfg.String(), Err: err}
	if isEOFOrReset(err) {
		e.Err = fmt.Errorf("the broker closed the connection: %v", err)
	}
	if _, ok := remoteAlert(err); ok {
		e.Kind = KindTLS
	}
	return e
}

// remoteAlert reports a TLS alert sent by the broker. crypto/tls returns
// these as a net.OpError "remote error" wrapping an unexported alert type,
// so the alert's text is all there is to go on.
func remoteAlert(err error) (string, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return op.Err.Error(), true
	}
	var a tls.AlertError
	if errors.As(err, &a) {
		return a.Error(), true
	}
	return "", false
}

// speaksTLS reports whether the broker's port completes a TLS handshake
// (certificate not checked): a short probe made only to explain a failure.
func speaksTLS(cfg *Config) bool {
	timeout := min(cfg.ConnectTimeout, 3*time.Second)
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	// Through the same proxy and local address as the connection that
	// failed, so that the probe reaches the same port the same way.
	dial, err := transportDialer(cfg)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := dialTLS(ctx, dial, "tcp", cfg.Addr(), &tls.Config{InsecureSkipVerify: true, ServerName: cfg.Host})
	if err != nil {
		// A server that asks for a client certificate may refuse us with
		// an alert, which is TLS all the same.
		_, alert := remoteAlert(err)
		return alert
	}
	c.Close()
	return true
}
