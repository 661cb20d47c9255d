package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mqtk/mqtk/broker/engine"
	"github.com/mqtk/mqtk/internal/wsconn"
)

// listenerSpec is a parsed --listen URL.
type listenerSpec struct {
	scheme string // tcp, tls, ws, wss, unix
	addr   string // host:port or socket path
	path   string // ws path
}

func (s listenerSpec) secure() bool { return s.scheme == "tls" || s.scheme == "wss" }

// parseListen parses one --listen value.
func parseListen(raw string) (listenerSpec, error) {
	if !strings.Contains(raw, "://") {
		return listenerSpec{}, fmt.Errorf("listener %q: want a URL such as tcp://127.0.0.1:1883, tls://:8883, ws://:8080/mqtt, wss://:8443/mqtt or unix:///path/to.sock", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return listenerSpec{}, fmt.Errorf("listener %q: %w", raw, err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "mqtt":
		scheme = "tcp"
	case "mqtts", "ssl":
		scheme = "tls"
	}
	switch scheme {
	case "unix":
		p := u.Path
		if u.Host != "" { // unix://relative/path
			p = u.Host + u.Path
		}
		if p == "" {
			return listenerSpec{}, fmt.Errorf("listener %q: unix socket needs a path, as in unix:///tmp/mqtk.sock", raw)
		}
		return listenerSpec{scheme: scheme, addr: p}, nil
	case "tcp", "tls", "ws", "wss":
	default:
		return listenerSpec{}, fmt.Errorf("listener %q: unknown scheme %q (want tcp, tls, ws, wss or unix)", raw, u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		// A missing port gets the IANA default for the scheme.
		host = u.Host
		port = map[string]string{"tcp": "1883", "tls": "8883", "ws": "8080", "wss": "8443"}[scheme]
	}
	if err := checkHostPort(host, port); err != nil {
		return listenerSpec{}, fmt.Errorf("listener %q: %w", raw, err)
	}
	spec := listenerSpec{scheme: scheme, addr: net.JoinHostPort(host, port)}
	if scheme == "ws" || scheme == "wss" {
		spec.path = u.Path
		if spec.path == "" {
			spec.path = "/mqtt"
		}
	} else if u.Path != "" && u.Path != "/" {
		return listenerSpec{}, fmt.Errorf("listener %q: a path only makes sense for ws:// and wss://", raw)
	}
	return spec, nil
}

// checkHostPort refuses what the operating system would only reject at
// bind time, with a message that says what to write instead.
func checkHostPort(host, port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a port number: use 1 to 65535, or 0 for a free one", port)
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	// Digits and dots only is meant as an IPv4 address (999.1.1.1), which
	// no resolver would take as a name either.
	if strings.Trim(host, "0123456789.") == "" {
		return fmt.Errorf("%q is not a valid IP address: use an address of this machine, 127.0.0.1 for local clients only or 0.0.0.0 for all interfaces", host)
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" ||
			label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a valid IP address or host name: use an address of this machine, 127.0.0.1 for local clients only or 0.0.0.0 for all interfaces", host)
		}
	}
	return nil
}

// checkExposure refuses to open a listener that other machines can reach
// unless something guards it, as mosquitto 2.0 does with its local-only mode.
//
// A password file or --allow-anonymous covers every listener. Required
// client certificates guard only the listeners that speak TLS: a plain
// tcp:// or ws:// listener beside them would still take anyone.
func checkExposure(specs []listenerSpec, o Options) error {
	if o.AllowAnonymous || o.PasswordFile != "" {
		return nil
	}
	for _, s := range specs {
		if s.scheme == "unix" || (o.RequireClientCert && s.secure()) {
			continue
		}
		host, _, _ := net.SplitHostPort(s.addr)
		if !isLoopbackHost(host) {
			shown := host
			if shown == "" {
				shown = "all interfaces"
			}
			guard := "--require-client-cert"
			if o.RequireClientCert {
				// Only a TLS listener can check certificates.
				guard = "tls:// or wss:// instead of " + s.scheme + "://"
			}
			return fmt.Errorf("listener %s://%s would accept anonymous clients from other machines (%s): "+
				"add --password-file FILE (see 'mqtk broker passwd'), %s, or --allow-anonymous if that is really what you want",
				s.scheme, s.addr, shown, guard)
		}
	}
	return nil
}

// loadTLS builds the server TLS configuration from the certificate files.
func loadTLS(o Options) (*tls.Config, error) {
	if o.TLSCert == "" || o.TLSKey == "" {
		return nil, optionErr("tls-cert", "", errors.New("a tls:// or wss:// listener needs --tls-cert and --tls-key (or --tls to use certificates from 'mqtk tlsgen')"))
	}
	cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, optionErr("tls-cert", "check the files given with --tls-cert and --tls-key (PEM; 'mqtk tlsgen server NAME' makes a pair)",
			fmt.Errorf("load tls certificate %s and key %s: %w", o.TLSCert, o.TLSKey, err))
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"mqtt", "http/1.1"},
	}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, optionErr("tls-ca", "check the file given with --tls-ca (the PEM CA certificate that signs client certificates)",
				fmt.Errorf("read client ca: %w", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, optionErr("tls-ca", "check the file given with --tls-ca (the PEM CA certificate that signs client certificates)",
				fmt.Errorf("client ca %s holds no PEM certificate", o.TLSCA))
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if o.RequireClientCert {
		if cfg.ClientCAs == nil {
			return nil, optionErr("tls-ca", "", errors.New("--require-client-cert needs --tls-ca, the CA that signed the client certificates"))
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if o.CertAsUsername && cfg.ClientCAs == nil {
		return nil, optionErr("tls-ca", "", errors.New("--cert-as-username needs --tls-ca, the CA that signed the client certificates"))
	}
	return cfg, nil
}

// tlsConfig returns a config that picks up reloaded certificates for every
// new handshake.
func (b *Broker) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return b.tls.Load(), nil
		},
	}
}

// listener is one bound --listen address: ":0" resolves to a known port
// before Start returns, and every connection passes through serveConn
// (tracking, the TLS handshake's time limit, the trace).
type listener struct {
	b     *Broker
	id    string
	info  Listener
	ln    net.Listener
	httpS *http.Server // ws and wss only

	once    sync.Once
	serveWG sync.WaitGroup
}

func (b *Broker) bind(ctx context.Context, id string, spec listenerSpec) (*listener, error) {
	var lc net.ListenConfig
	var ln net.Listener
	var err error
	if spec.scheme == "unix" {
		removeStaleSocket(spec.addr)
		ln, err = lc.Listen(ctx, "unix", spec.addr)
	} else {
		ln, err = lc.Listen(ctx, "tcp", spec.addr)
	}
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = " (another broker is running there: stop it or pick another port with --listen)"
		}
		return nil, fmt.Errorf("listen on %s://%s: %w%s", spec.scheme, spec.addr, err, hint)
	}
	l := &listener{b: b, id: id, ln: ln}
	l.info = Listener{Scheme: spec.scheme, Addr: ln.Addr().String(), Path: spec.path}
	if spec.scheme == "unix" {
		l.info.Addr = spec.addr
	}
	if spec.scheme == "tls" {
		l.ln = tls.NewListener(ln, b.tlsConfig())
	}
	if spec.scheme == "ws" || spec.scheme == "wss" {
		if spec.scheme == "wss" {
			l.ln = tls.NewListener(ln, b.tlsConfig())
		}
		mux := http.NewServeMux()
		mux.HandleFunc(spec.path, l.serveWS)
		l.httpS = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: b.limits.ConnectTimeout,
			ErrorLog:          nil,
		}
	}
	return l, nil
}

// removeStaleSocket deletes a unix socket file nobody listens on any more,
// left behind by a broker killed with -9.
func removeStaleSocket(path string) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return
	}
	_ = os.Remove(path)
}

// serve accepts until the listener is closed. Accept errors that come from
// resource exhaustion (too many open files) back off instead of ending the
// listener, so a flood of connections only delays newcomers.
func (l *listener) serve() {
	defer l.serveWG.Done()
	if l.httpS != nil {
		_ = l.httpS.Serve(l.ln)
		return
	}
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.b.isClosing() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				if delay == 0 {
					delay = 5 * time.Millisecond
					l.b.log.warn("accept failed, backing off", "listener", l.info.URL(), "error", err)
				} else if delay < time.Second {
					delay *= 2
				}
				time.Sleep(delay)
				continue
			}
			return
		}
		delay = 0
		go l.b.serveConn(l.id, c, "")
	}
}

func isTemporary(err error) bool {
	s := err.Error()
	return strings.Contains(s, "too many open files") || strings.Contains(s, "resource temporarily unavailable")
}

func (l *listener) closeListener() {
	l.once.Do(func() {
		if l.httpS != nil {
			_ = l.httpS.Close()
		}
		_ = l.ln.Close()
	})
}

func (l *listener) wait() { l.serveWG.Wait() }

var wsUpgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	Subprotocols:    []string{"mqtt", "mqttv3.1"},
	// Browsers send an Origin; MQTT over WebSocket has no cookies to steal,
	// and authentication happens in CONNECT, so any origin may connect.
	CheckOrigin: func(*http.Request) bool { return true },
}

// serveWS upgrades an HTTP request and serves the MQTT connection inside it
// until it ends (the handler must not return earlier: the connection is
// hijacked and owned by this goroutine).
func (l *listener) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := wsUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	cn := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	<-l.b.serveConn(l.id, wsconn.New(ws), cn)
}

func (b *Broker) isClosing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closing
}

// serveConn hands one accepted connection to the engine and returns; the
// channel it returns is closed when the connection has ended. Close waits
// for every connection that got this far. The engine runs a plain TCP or
// Unix connection without a goroutine of ours while it is idle (see
// engine.Config.ParkAfter).
func (b *Broker) serveConn(id string, raw net.Conn, certCN string) <-chan struct{} {
	ended := make(chan struct{})
	c := &trackedConn{Conn: raw}
	if b.tracer != nil {
		c.trace = b.tracer.conn(raw.RemoteAddr().String())
	}
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		_ = raw.Close()
		close(ended)
		return ended
	}
	b.conns[c] = struct{}{}
	b.connWG.Add(1)
	b.mu.Unlock()
	done := func(err error) {
		b.logDisconnect(c, err)
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		_ = c.Close()
		b.connWG.Done()
		close(ended)
	}
	if tc, ok := raw.(*tls.Conn); ok {
		_ = raw.SetDeadline(time.Now().Add(b.limits.ConnectTimeout))
		if err := tc.Handshake(); err != nil {
			b.log.warn("tls handshake failed", "remote", raw.RemoteAddr().String(), "error", err)
			done(nil)
			return ended
		}
		_ = raw.SetDeadline(time.Time{})
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			certCN = st.PeerCertificates[0].Subject.CommonName
		}
	}
	b.eng.Start(c, engine.Client{Remote: raw.RemoteAddr().String(), CertCN: certCN, Listener: id}, done)
	return ended
}

// logDisconnect logs, once, why a connection ended, unless it is an
// ordinary end (client closed or disconnected, server shutting down,
// session taken over, a refusal the engine already logged).
func (b *Broker) logDisconnect(c *trackedConn, err error) {
	if err == nil || b.isClosing() || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || engine.Ordinary(err) {
		return
	}
	s := err.Error()
	if strings.Contains(s, "use of closed network connection") || strings.Contains(s, "connection reset") {
		return
	}
	b.log.warn("connection dropped", "remote", c.RemoteAddr().String(), "reason", s)
}

// trackedConn is a client connection as the engine sees it: the trace
// follows its bytes, and Close may be called more than once.
type trackedConn struct {
	net.Conn
	closeOnce sync.Once
	// trace follows the connection's bytes for --trace; nil without it.
	trace *connTrace
}

// Read passes what the client sent to the trace, when there is one.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.trace != nil {
		c.trace.read(p[:n])
	}
	return n, err
}

// Write passes what the client is sent to the trace, when there is one,
// before writing it: the client may answer at once, and its answer must
// not come first in the trace.
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.trace != nil {
		c.trace.wrote(p)
	}
	return c.Conn.Write(p)
}

// Unbuffered lets the engine watch the socket of an idle connection and
// write to it directly (engine.Unbuffered): Read and Write above add
// nothing to the socket's own, unless the trace must see the bytes.
func (c *trackedConn) Unbuffered() net.Conn {
	if c.trace != nil {
		return nil
	}
	return c.Conn
}

func (c *trackedConn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.Conn.Close() })
	return err
}
