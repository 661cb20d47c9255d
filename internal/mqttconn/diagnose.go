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

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/packet"
)

// diagnose turns a failure to connect into a classified *clierr.Error whose
// message names the cause and whose hints say what to try. It is the one
// place where connection failures are classified, so that every command
// prints and exits the same way. w may be nil (the transport never opened).
func diagnose(cfg *Config, err error, w *watchConn, st *connState) *clierr.Error {
	op := "connect to " + cfg.String()
	var ce *clierr.Error
	if errors.As(err, &ce) {
		if ce.Op == "" {
			ce.Op = op
		}
		return ce
	}
	f := &failure{cfg: cfg, err: err, w: w, st: st, tlsOn: cfg.Scheme == "tls" || cfg.Scheme == "wss", addr: cfg.Addr()}
	f.alert, f.isAlert = remoteAlert(err)
	for _, d := range diagnoses() {
		if d.when(f) {
			fd := d.say(f)
			return &clierr.Error{Kind: d.kind, Op: op, Err: fd.msg, Hints: fd.hints}
		}
	}
	// Nothing more specific to say: a failure of the socket is still a
	// network failure, anything else is not.
	e := &clierr.Error{Kind: clierr.KindNetwork, Op: op, Err: err}
	var nop *net.OpError
	if !errors.As(err, &nop) {
		e.Kind = clierr.KindOther
	}
	return e
}

// failure is what diagnose knows about one failed connect. The x509 and
// transport error fields are filled by the errors.As in the predicate
// that matches them, for its message to use.
type failure struct {
	cfg   *Config
	err   error
	w     *watchConn // nil: the transport never opened
	st    *connState // nil without TLS
	tlsOn bool
	addr  string

	alert   string // the text of a TLS alert the broker sent
	isAlert bool

	hostErr   x509.HostnameError
	unknownCA x509.UnknownAuthorityError
	invalid   x509.CertificateInvalidError
	hs        *handshakeError
	dnsErr    *net.DNSError
	wsErr     *wsStatusError
	upClosed  *upgradeClosedError
}

// A diagnosis is one cause of a failed connect: when it applies, the Kind
// (and so the exit code) it gets, and the message and hints that say what
// happened and what to try.
type diagnosis struct {
	when func(f *failure) bool
	kind clierr.Kind
	say  func(f *failure) finding
}

// finding is what a diagnosis says: the cause, and what to try.
type finding struct {
	msg   error
	hints []string
}

// Hints that more than one diagnosis gives.
const (
	hintClientCert     = "give a client certificate and its key with --cert and --key"
	hintClientCertBad  = "the client certificate must be signed by a CA the broker trusts (its cafile) and be valid now"
	hintSocketListener = "is a broker listening on that socket? try mqtk broker"
)

// diagnoses lists the causes diagnose tells apart, tried in this order:
// TLS verification first (the most specific), then what the broker's
// TLS said, then the transport, then what the broker sent instead of a
// CONNACK. The first that applies wins; the probe in speaksTLS runs only
// when every cause before it was ruled out.
func diagnoses() []diagnosis {
	return []diagnosis{
		// TLS verification.
		{when: func(f *failure) bool { return errors.As(f.err, &f.hostErr) }, kind: clierr.KindTLS, say: func(f *failure) finding {
			c := f.hostErr.Certificate
			// The reissue command keeps the names the certificate has, so
			// following the hint does not break clients that use them.
			reissue := append([]string{f.hostErr.Host}, certNameList(c)...)
			return finding{msg: fmt.Errorf("the server certificate is for %s, not %q", certNames(c), f.hostErr.Host), hints: []string{fmt.Sprintf("connect with -h %s or reissue with mqtk tlsgen server %s --force (add --dir DIR where its CA is not in ./certs)",
				firstName(c, f.cfg.Host), strings.Join(reissue, " "))}}
		}},
		{when: func(f *failure) bool { return errors.As(f.err, &f.unknownCA) }, kind: clierr.KindTLS, say: func(f *failure) finding {
			c := f.unknownCA.Cert
			hints := []string{"give the CA certificate that signed it with --cafile (or --capath); --insecure skips verification, for tests only"}
			if c != nil && strings.HasPrefix(c.Issuer.CommonName, "mqtk local CA") {
				hints = append(hints, "a CA made by mqtk: use the ca.pem from the directory that issued the broker's certificate ($XDG_DATA_HOME/mqtk/tls/ca.pem, or ~/.local/share/mqtk/tls/ca.pem, for mqtk broker --tls); a CA replaced since needs the new ca.pem")
			}
			return finding{msg: fmt.Errorf("the server certificate is signed by an unknown authority%s", issuerOf(c)), hints: hints}
		}},
		{when: func(f *failure) bool { return errors.As(f.err, &f.invalid) && f.invalid.Reason == x509.Expired }, kind: clierr.KindTLS, say: func(f *failure) finding {
			c := f.invalid.Cert
			reissue := "mqtk tlsgen server NAME... --force"
			if names := certNameList(c); len(names) > 0 {
				reissue = "mqtk tlsgen server " + strings.Join(names, " ") + " --force"
			}
			return finding{msg: outsideValidity(c), hints: []string{"reissue the server certificate with " + reissue + " (add --dir DIR where its CA is not in ./certs), or check the clocks"}}
		}},
		{when: func(f *failure) bool { return errors.As(f.err, &f.invalid) }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the server certificate is not valid: %v", f.invalid), hints: nil}
		}},

		// A TLS alert from the broker. certificate_required is TLS 1.3's;
		// handshake_failure is what TLS 1.2 servers send instead.
		{when: func(f *failure) bool { return f.isAlert && alertWantsCert(f.alert) && f.cfg.TLS.CertFile == "" }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the broker requires a client certificate (TLS alert: %v)", f.err), hints: []string{hintClientCert}}
		}},
		{when: func(f *failure) bool { return f.isAlert && alertWantsCert(f.alert) }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("TLS handshake failed: %v", f.err), hints: nil}
		}},
		{when: func(f *failure) bool { return f.isAlert && strings.Contains(f.alert, "certificate") }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the broker did not accept the client certificate (%v)", f.err), hints: []string{hintClientCertBad}}
		}},
		{when: func(f *failure) bool { return f.isAlert && strings.Contains(f.alert, "protocol version") }, kind: clierr.KindTLS, say: func(f *failure) finding {
			hint := "the broker offers only TLS older than 1.2, which mqtk does not accept: upgrade the broker's TLS settings"
			if f.cfg.TLS.MinVersion == "1.3" {
				hint = "the broker offers only older TLS: allow TLS 1.2 with --tls-version 1.2 (the default)"
			}
			return finding{msg: fmt.Errorf("TLS handshake failed: the broker does not support the TLS version asked for (%v)", f.err), hints: []string{hint}}
		}},
		{when: func(f *failure) bool { return f.isAlert }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("TLS handshake failed: %v", f.err), hints: nil}
		}},

		// The broker asked for a client certificate, then closed.
		{when: func(f *failure) bool {
			return f.certRequested() && f.cfg.TLS.CertFile == "" && !isTimeout(f.err)
		}, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the broker requires a client certificate: it asked for one and closed the connection (%v)", f.err), hints: []string{hintClientCert}}
		}},
		// TLS 1.3: the broker checks our certificate after our side of the
		// handshake is done, and rejects it by closing (the alert that says
		// why may be lost to the reset).
		{when: func(f *failure) bool {
			return f.certRequested() && isEOFOrReset(f.err) && (f.w == nil || f.w.readNothing())
		}, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the broker did not accept the client certificate: it closed the connection after checking it (%v)", f.err), hints: []string{hintClientCertBad}}
		}},

		// The TLS handshake failed on our side.
		{when: func(f *failure) bool {
			return errors.As(f.err, &f.hs) && notTLSAnswer(f.err) && f.cfg.Scheme == "wss"
		}, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the server did not answer TLS: is port %d a plain WebSocket (ws://) port?", f.cfg.Port), hints: []string{"use ws:// without --cafile, or the broker's wss port"}}
		}},
		{when: func(f *failure) bool { return errors.As(f.err, &f.hs) && notTLSAnswer(f.err) }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the server did not answer TLS: is port %d plain MQTT?", f.cfg.Port), hints: []string{"drop --cafile/--cert/mqtts:// or use the broker's TLS port (8883 by convention)"}}
		}},
		{when: func(f *failure) bool { return errors.As(f.err, &f.hs) }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("TLS handshake failed: %v", f.hs.err), hints: nil}
		}},

		// Reaching the broker.
		{when: func(f *failure) bool { return errors.As(f.err, &f.dnsErr) }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("cannot resolve host %q: %s", f.dnsErr.Name, f.dnsErr.Err), hints: []string{"check the host name given with -h or the URL"}}
		}},
		{when: func(f *failure) bool { return errors.Is(f.err, syscall.ECONNREFUSED) && f.cfg.Scheme == "unix" }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("connection refused on socket %s", f.cfg.SocketPath), hints: []string{hintSocketListener}}
		}},
		{when: func(f *failure) bool { return errors.Is(f.err, syscall.ECONNREFUSED) }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("connection refused by %s", f.addr), hints: []string{fmt.Sprintf("is a broker running on %s? try mqtk broker", f.addr)}}
		}},
		{when: func(f *failure) bool { return f.cfg.Scheme == "unix" && errors.Is(f.err, os.ErrNotExist) }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("no socket at %s", f.cfg.SocketPath), hints: []string{hintSocketListener}}
		}},
		{when: func(f *failure) bool { return isTimeout(f.err) }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("timed out after %s waiting for %s", f.cfg.ConnectTimeout, stage(f.w, f.tlsOn)), hints: []string{fmt.Sprintf("is %s reachable and an MQTT broker? raise --connect-timeout if the link is slow", f.addr)}}
		}},

		// WebSocket.
		{when: func(f *failure) bool { return errors.As(f.err, &f.wsErr) && f.wsErr.toTLS }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the server refused the plain HTTP sent during the WebSocket upgrade (%s): port %d expects TLS", f.wsErr.status, f.cfg.Port), hints: []string{"use wss:// (with --cafile if needed)"}}
		}},
		{when: func(f *failure) bool { return errors.As(f.err, &f.wsErr) }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("%s at %s", f.wsErr.Error(), f.wsErr.url), hints: []string{"check the WebSocket path (--ws-path, default /mqtt) and that the port is a WebSocket listener"}}
		}},
		// The TLS handshake worked; the HTTP upgrade inside it did not.
		{when: func(f *failure) bool { return errors.As(f.err, &f.upClosed) && f.cfg.Scheme == "wss" }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the server closed the connection during the WebSocket upgrade: port %d speaks TLS but is not a WebSocket listener", f.cfg.Port), hints: []string{fmt.Sprintf("for MQTT over TLS on that port use mqtts://%s, or give the broker's wss port", f.addr), "check --ws-path too (default /mqtt)"}}
		}},
		// Nothing comes back to an HTTP upgrade sent to a TLS port.
		{when: func(f *failure) bool { return f.w == nil && f.cfg.Scheme == "ws" && isEOFOrReset(f.err) }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the server closed the connection during the WebSocket upgrade: %v", f.err), hints: []string{"the port may expect TLS: use wss:// (with --cafile if needed)", "or it is not a WebSocket listener: check the port and --ws-path"}}
		}},

		// What the broker sent, or did not, instead of a CONNACK.
		// MQTT sent to a WebSocket listener: it answers with an HTTP error.
		{when: func(f *failure) bool { return f.w != nil && f.w.sawHTTP() }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			scheme := "ws"
			if f.tlsOn {
				scheme = "wss"
			}
			return finding{msg: fmt.Errorf("port %d answered with HTTP: it is a WebSocket listener, not plain MQTT", f.cfg.Port), hints: []string{fmt.Sprintf("connect with -L %s://%s/mqtt (adjust the path to the broker's)", scheme, f.addr)}}
		}},
		// A plain client on a TLS port: the broker's first bytes are a TLS
		// record (alert or handshake), never an MQTT CONNACK.
		{when: func(f *failure) bool { return f.w != nil && !f.tlsOn && f.w.sawTLS() }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the server answered with TLS, not MQTT"), hints: []string{"the port expects TLS: add --cafile or use mqtts://"}}
		}},
		// Brokers such as mosquitto close a plain connection to a TLS port
		// without a byte; a TLS handshake of our own tells that apart from
		// a broker that dropped the CONNECT.
		{when: func(f *failure) bool { return f.closedSilently() && speaksTLS(f.cfg) }, kind: clierr.KindTLS, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the broker closed the connection before CONNACK: port %d expects TLS", f.cfg.Port), hints: []string{"add --cafile CA.pem (or --tls for a publicly trusted certificate) or use mqtts://"}}
		}},
		{when: func(f *failure) bool { return f.closedSilently() }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the broker closed the connection before CONNACK"), hints: []string{"the broker rejected the CONNECT: see its log (an unexpected client id, protocol version or packet size)"}}
		}},
		{when: func(f *failure) bool { return isEOFOrReset(f.err) }, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("the connection was closed: %v", f.err), hints: nil}
		}},
		{when: func(f *failure) bool {
			return errors.Is(f.err, syscall.EHOSTUNREACH) || errors.Is(f.err, syscall.ENETUNREACH)
		}, kind: clierr.KindNetwork, say: func(f *failure) finding {
			return finding{msg: fmt.Errorf("%s is unreachable: %v", f.addr, f.err), hints: []string{"check the host, the network and any firewall"}}
		}},
	}
}

// certRequested reports whether the broker asked for a client certificate
// during the handshake.
func (f *failure) certRequested() bool { return f.st != nil && f.st.certRequested.Load() }

// closedSilently reports a plain connection the broker closed without
// sending a byte.
func (f *failure) closedSilently() bool {
	return f.w != nil && !f.tlsOn && isEOFOrReset(f.err) && f.w.readNothing()
}

// alertWantsCert reports a TLS alert that means "no client certificate".
func alertWantsCert(alert string) bool {
	return strings.Contains(alert, "certificate required") || strings.Contains(alert, "handshake failure")
}

// notTLSAnswer reports a handshake that failed because the server answered
// with something other than TLS, or with nothing.
func notTLSAnswer(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || isEOFOrReset(err)
}

// issuerOf names the issuer of a certificate no CA given vouches for, with
// its key id: every CA mqtk makes on one host has the same name, so a
// --cafile from another run looks right by name alone, and the key id
// tells them apart (tlsgen inspect shows it). When the broker sends its
// CA along (mosquitto does), the certificate left unverified is that CA
// itself.
func issuerOf(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	issuer := fmt.Sprintf(" (issuer %q", c.Issuer.String())
	kid := c.AuthorityKeyId
	if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) {
		kid = c.SubjectKeyId
	}
	if len(kid) > 0 {
		issuer += fmt.Sprintf(", key id %X", kid[:min(len(kid), 8)])
	}
	return issuer + ")"
}

// outsideValidity says whether a certificate expired or is not valid yet.
func outsideValidity(c *x509.Certificate) error {
	now := time.Now().UTC().Format(time.RFC3339)
	switch {
	case c != nil && time.Now().Before(c.NotBefore):
		return fmt.Errorf("the server certificate is not valid yet: valid from %s to %s, now %s",
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now)
	case c != nil:
		return fmt.Errorf("the server certificate expired: valid from %s to %s, now %s",
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now)
	}
	return fmt.Errorf("the server certificate has expired or is not valid yet")
}

// ReasonName returns the MQTT 5 name of a reason code (0x87 "not authorized").
// 3.1.1 CONNACK return codes are mapped to their v5 equivalents by the
// 3.1.1 implementation before they get here.
func ReasonName(code byte) string {
	return packet.ReasonCode(code).String()
}

// refused is the error for a CONNACK with a failure reason code.
func refused(cfg *Config, code byte, reasonString string) *clierr.Error {
	msg := fmt.Sprintf("the broker refused the connection: %s (0x%02X)", ReasonName(code), code)
	if reasonString != "" {
		msg += ": " + reasonString
	}
	e := &clierr.Error{Kind: clierr.KindRefused, Op: "connect to " + cfg.String(), Err: errors.New(msg), Reason: code}
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
func refusedV311(cfg *Config, rc byte) *clierr.Error {
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
func lost(cfg *Config, err error) *clierr.Error {
	e := &clierr.Error{Kind: clierr.KindNetwork, Op: "connection to " + cfg.String(), Err: err}
	if isEOFOrReset(err) {
		e.Err = fmt.Errorf("the broker closed the connection: %v", err)
	}
	if _, ok := remoteAlert(err); ok {
		e.Kind = clierr.KindTLS
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
