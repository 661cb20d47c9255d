// Package broker is mqtk's built-in MQTT broker: the protocol engine of
// broker/engine (MQTT 3.1, 3.1.1 and 5) with what makes it a product:
// listeners (tcp, tls, ws, wss, unix), the password file and ACL in
// mosquitto's formats, client certificates, persistence (broker/boltstore),
// the trace, $SYS, metrics and limits.
//
// Concurrency contract: a Broker is created by New, started once by Start and
// stopped by Close, which may be called any number of times from any
// goroutine. Reload may run concurrently with traffic.
package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqtk/mqtk/broker/boltstore"
	"github.com/mqtk/mqtk/broker/engine"
)

// Sentinel errors.
var (
	// ErrStarted is returned by Start when the broker was already started.
	ErrStarted = errors.New("broker already started")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("broker closed")
)

// OptionError is returned by New for Options that cannot work: a bad value,
// a combination that does not make sense, or a file named by an option that
// cannot be read. Option is the flag (and config key) to fix, Hint says how
// when the message alone does not. Other errors from New (the data
// directory cannot be opened) are failures of the machine, not of the
// options.
type OptionError struct {
	Option string
	Hint   string
	Err    error
}

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

func optionErr(option, hint string, err error) error {
	return &OptionError{Option: option, Hint: hint, Err: err}
}

// Options configures a Broker. The zero value of a limit means "use the
// default" (see DefaultLimits) unless ExactLimits is set; yaml tags are the
// keys of `--config FILE.yaml`, and every key is printed by --print-config,
// false and zero values included, so the effective value is never hidden.
type Options struct {
	// Listeners are URLs: "tcp://127.0.0.1:1883", "tls://:8883",
	// "ws://127.0.0.1:8080/mqtt", "wss://:8443/mqtt", "unix:///run/mqtk.sock".
	// Port 0 picks a free port; Broker.Listeners reports the real one.
	// Empty means tcp://127.0.0.1:1883.
	Listeners []string `yaml:"listen"`

	TLSCert           string `yaml:"tls-cert"`
	TLSKey            string `yaml:"tls-key"`
	TLSCA             string `yaml:"tls-ca"` // CA that signs client certificates
	RequireClientCert bool   `yaml:"require-client-cert"`
	CertAsUsername    bool   `yaml:"cert-as-username"` // client certificate CN becomes the username
	AllowAnonymous    bool   `yaml:"allow-anonymous"`

	PasswordFile string `yaml:"password-file"` // mosquitto_passwd format
	ACLFile      string `yaml:"acl-file"`      // mosquitto acl_file format
	DataDir      string `yaml:"data"`          // persistence directory; empty = in memory

	Limits `yaml:",inline"`

	Trace     bool   `yaml:"trace"`
	LogFormat string `yaml:"log-format"` // "text" (default) or "json"
	HTTPAddr  string `yaml:"http"`       // metrics, health and API endpoint
	Pprof     bool   `yaml:"pprof"`

	// ExactLimits says Limits were filled in completely, so the zeros in
	// them were meant: see Limits.WithDefaultsExact. The command line sets
	// it; a library user who builds Limits{} field by field leaves it off.
	ExactLimits bool `yaml:"-"`

	// Log receives commentary (connections refused, failed logins, faults,
	// and the trace when Trace is set); nil discards it.
	Log io.Writer `yaml:"-"`
	// Color makes the trace coloured; the caller decides from the terminal.
	Color bool `yaml:"-"`
	// Version is what $SYS/broker/version reports after "mqtk ".
	Version string `yaml:"-"`
}

// Listener is one bound listener.
type Listener struct {
	Scheme string // tcp, tls, ws, wss or unix
	Addr   string // host:port with the real port, or the socket path
	Path   string // WebSocket path
}

// URL returns the address a client uses to reach the listener, in the URL
// schemes mqtk's clients understand (mqtt://, mqtts://, ws://, wss://, unix://).
func (l Listener) URL() string {
	switch l.Scheme {
	case "tcp":
		return "mqtt://" + l.Addr
	case "tls":
		return "mqtts://" + l.Addr
	case "ws", "wss":
		return l.Scheme + "://" + l.Addr + l.Path
	case "unix":
		return "unix://" + l.Addr
	}
	return l.Scheme + "://" + l.Addr
}

// Broker is a running (or ready to run) MQTT broker.
type Broker struct {
	opts   Options
	limits Limits
	eng    *engine.Server
	log    *logger
	specs  []listenerSpec
	auth   *access
	tls    atomic.Pointer[tls.Config] // current server TLS config (Reload swaps it)
	store  *boltstore.Store           // nil without DataDir
	tracer *tracer                    // nil without Trace

	authFailures atomic.Uint64

	mu        sync.Mutex
	started   bool
	startedAt time.Time
	closing   bool
	closed    chan struct{}
	closeErr  error
	lns       []*listener
	bound     []Listener
	conns     map[*trackedConn]struct{}
	connWG    sync.WaitGroup // one per accepted connection, until it has ended
	extraStop []func(context.Context) error
	httpAddr  string
}

// New validates opts and builds the broker without binding anything. With
// a data directory it opens the store and restores what it holds.
func New(opts Options) (*Broker, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	switch opts.LogFormat {
	case "", "text", "json":
	default:
		return nil, optionErr("log-format", "", fmt.Errorf("log format %q: want text or json", opts.LogFormat))
	}
	if len(opts.Listeners) == 0 {
		opts.Listeners = []string{"tcp://127.0.0.1:1883"}
	}
	limits := opts.Limits.WithDefaults()
	if opts.ExactLimits {
		limits = opts.Limits.WithDefaultsExact()
	}
	b := &Broker{
		opts:   opts,
		limits: limits,
		log:    &logger{w: opts.Log, json: opts.LogFormat == "json"},
		closed: make(chan struct{}),
		conns:  map[*trackedConn]struct{}{},
	}
	if err := b.limits.validate(); err != nil {
		return nil, optionErr("", "", err)
	}
	needTLS := false
	for _, raw := range opts.Listeners {
		spec, err := parseListen(raw)
		if err != nil {
			return nil, optionErr("listen", "--listen takes tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/path, wss://HOST:PORT/path or unix:///path", err)
		}
		if spec.secure() {
			needTLS = true
		}
		b.specs = append(b.specs, spec)
	}
	if err := checkExposure(b.specs, opts); err != nil {
		return nil, optionErr("listen", "", err)
	}
	if err := checkHTTPExposure(opts); err != nil {
		return nil, err
	}
	if needTLS {
		cfg, err := loadTLS(opts)
		if err != nil {
			return nil, err
		}
		b.tls.Store(cfg)
	} else if opts.TLSCert != "" || opts.TLSKey != "" {
		return nil, optionErr("tls-cert", "", errors.New("--tls-cert/--tls-key given but no tls:// or wss:// listener: add --listen tls://ADDR"))
	}
	if (opts.RequireClientCert || opts.CertAsUsername) && !needTLS {
		return nil, optionErr("require-client-cert", "", errors.New("client certificates need a tls:// or wss:// listener: add --listen tls://ADDR"))
	}

	auth, err := newAccess(b, opts)
	if err != nil {
		return nil, authFileErr(opts, err)
	}
	b.auth = auth
	if opts.Trace {
		b.tracer = newTracer(opts.Log, opts.LogFormat == "json", opts.Color)
	}
	cfg := b.limits.engineConfig()
	cfg.Hooks = auth
	cfg.Logf = func(format string, args ...any) { b.log.warn(fmt.Sprintf(format, args...)) }
	var snap *engine.Snapshot
	if opts.DataDir != "" {
		st, err := boltstore.Open(opts.DataDir, func(err error) { b.log.warn("store write failed", "error", err) })
		if err != nil {
			return nil, fmt.Errorf("open data directory %s: %w", opts.DataDir, err)
		}
		if snap, err = st.Load(); err != nil {
			_ = st.Close()
			return nil, err
		}
		b.store = st
		cfg.Store = st
	}
	b.eng = engine.New(cfg)
	if snap != nil {
		if err := b.eng.Restore(snap); err != nil {
			_ = b.store.Close()
			return nil, fmt.Errorf("restore from %s: %w", b.store.Path(), err)
		}
	}
	return b, nil
}

// checkHTTPExposure refuses an --http endpoint other machines can reach:
// /api lists client ids, user names and addresses and /debug/pprof shows
// the process, with no authentication of their own.
func checkHTTPExposure(o Options) error {
	if o.HTTPAddr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(o.HTTPAddr)
	if err != nil {
		return optionErr("http", "give --http HOST:PORT, for example 127.0.0.1:9090", fmt.Errorf("--http %q: %w", o.HTTPAddr, err))
	}
	if !isLoopbackHost(host) {
		shown := host
		if shown == "" {
			shown = "all interfaces"
		}
		return optionErr("http", "bind it to 127.0.0.1 (--http 127.0.0.1:PORT) and reach it through an SSH tunnel or a reverse proxy that authenticates",
			fmt.Errorf("--http %s would serve /api (client ids, user names, addresses) and /metrics to other machines (%s) without authentication", o.HTTPAddr, shown))
	}
	return nil
}

// authFileErr names the option whose file could not be used. The password
// file is read first, so an error mentioning neither file path comes from
// it.
func authFileErr(o Options, err error) error {
	if o.ACLFile != "" && strings.Contains(err.Error(), "acl file") {
		return optionErr("acl-file", "check the file given with --acl-file (mosquitto acl_file syntax)", err)
	}
	return optionErr("password-file", "check the file given with --password-file (make one with 'mqtk broker passwd FILE USER')", err)
}

// Engine exposes the protocol engine, for tests and tools that need its
// figures.
func (b *Broker) Engine() *engine.Server { return b.eng }

// Start binds every listener and starts serving. It returns once all
// listeners accept connections (connections made after Start returns are
// never refused because the broker is still starting).
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return ErrClosed
	}
	if b.started {
		return ErrStarted
	}
	b.started = true
	b.startedAt = time.Now()
	for i, spec := range b.specs {
		ln, err := b.bind(ctx, fmt.Sprintf("%s%d", spec.scheme, i), spec)
		if err != nil {
			for _, l := range b.lns {
				l.closeListener()
			}
			b.lns = nil
			return err
		}
		b.lns = append(b.lns, ln)
		b.bound = append(b.bound, ln.info)
	}
	for _, l := range b.lns {
		l.serveWG.Add(1)
		go l.serve()
	}
	b.startSys()
	if err := b.startOps(ctx); err != nil {
		return err
	}
	return nil
}

// Listeners returns the bound listeners (empty before Start).
func (b *Broker) Listeners() []Listener {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Listener(nil), b.bound...)
}

// Close stops accepting, sends MQTT 5 clients DISCONNECT 0x8B (server
// shutting down), closes every connection and the store. It is idempotent
// and returns when everything has stopped or ctx ends, whichever is first:
// it never hangs, even with clients that do not read.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		select {
		case <-b.closed:
			return b.closeErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.closing = true
	lns := b.lns
	b.mu.Unlock()

	go func() {
		defer close(b.closed)
		b.closeErr = b.shutdown(lns)
	}()
	select {
	case <-b.closed:
		return b.closeErr
	case <-ctx.Done():
		return fmt.Errorf("close broker: %w", ctx.Err())
	}
}

// shutdownGrace bounds how long the engine waits for clients to take
// their DISCONNECT before their connections are cut.
const shutdownGrace = 5 * time.Second

// shutdown runs the ordered stop: no new connections, the engine tells
// MQTT 5 clients and closes every connection, then what is left (TLS
// handshakes) is closed, then the store is flushed and closed.
func (b *Broker) shutdown(lns []*listener) error {
	var errs []error
	for _, l := range lns {
		l.closeListener()
	}
	for _, l := range lns {
		l.wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	if err := b.eng.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	cancel()
	b.mu.Lock()
	conns := make([]*trackedConn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	b.connWG.Wait()
	for _, stop := range b.extraStop {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := stop(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if b.store != nil {
		if err := b.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Reload re-reads the password file, the ACL file and the TLS certificates.
// Existing connections are kept; new ones see the new settings, and the
// ACL applies at once to every delivery. On error the previous settings
// stay in force.
func (b *Broker) Reload() error {
	var errs []error
	if err := b.auth.reload(); err != nil {
		errs = append(errs, err)
	}
	if b.tls.Load() != nil {
		cfg, err := loadTLS(b.opts)
		if err != nil {
			errs = append(errs, err)
		} else {
			b.tls.Store(cfg)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	b.log.info("reloaded password file, acl and tls certificates")
	return nil
}

// Run is a broker's whole life, for mqtk broker and for programs that
// embed one: New, Start, then serving (if not nil) once every listener
// accepts connections, and a clean Close, bounded by ten seconds, once
// ctx has ended and serving has returned. serving runs on Run's goroutine,
// so what it does (a reload on SIGHUP, say) never overlaps Close; it
// should return when ctx ends. Errors from New are *OptionError when the
// options are at fault.
func Run(ctx context.Context, opts Options, serving func(context.Context, *Broker)) error {
	b, err := New(opts)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		_ = b.Close(context.Background())
		return err
	}
	if serving != nil {
		serving(ctx, b)
	}
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Close(cctx); err != nil {
		return fmt.Errorf("stop broker: %w", err)
	}
	return nil
}

// logger writes commentary as "mqtk: ..." lines or JSON lines.
type logger struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

func (l *logger) write(level, msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.json {
		m := map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano), "level": level, "msg": msg}
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		out, _ := json.Marshal(m)
		_, _ = l.w.Write(append(out, '\n'))
		return
	}
	var sb strings.Builder
	sb.WriteString("mqtk: ")
	sb.WriteString(msg)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&sb, " %v=%v", kv[i], kv[i+1])
	}
	sb.WriteByte('\n')
	_, _ = io.WriteString(l.w, sb.String())
}

func (l *logger) info(msg string, kv ...any) { l.write("info", msg, kv...) }
func (l *logger) warn(msg string, kv ...any) { l.write("warn", msg, kv...) }

// isLoopbackHost reports whether host only accepts local connections.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startOps starts the HTTP endpoint once the broker serves.
func (b *Broker) startOps(ctx context.Context) error {
	if b.opts.HTTPAddr == "" {
		return nil
	}
	addr, stop, err := serveHTTP(ctx, b.opts.HTTPAddr, b, b.opts.Pprof)
	if err != nil {
		return fmt.Errorf("http endpoint %s: %w", b.opts.HTTPAddr, err)
	}
	b.httpAddr = addr.String()
	b.extraStop = append(b.extraStop, stop)
	return nil
}

// HTTPAddr is the bound address of the --http endpoint ("" when off).
func (b *Broker) HTTPAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.httpAddr
}
