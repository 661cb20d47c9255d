// Package broker is mqtk's built-in MQTT broker: mochi-mqtt's protocol engine
// (MQTT 3.0, 3.1.1 and 5) wrapped with our own listeners, authentication, ACL,
// limits and workarounds for mochi's known faults.
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
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
	srv    *mqtt.Server
	log    *logger
	specs  []listenerSpec

	auth *authHook
	fix  *fixHook
	tls  atomic.Pointer[tls.Config] // current server TLS config (Reload swaps it)

	mu        sync.Mutex
	started   bool
	epoch     time.Time // monotonic base for trackedConn.lastWrite
	bp        *backpressureHook
	closing   bool
	closed    chan struct{}
	closeErr  error
	lns       []*listener
	bound     []Listener
	conns     map[*trackedConn]struct{}
	connWG    sync.WaitGroup // one per accepted connection, until mochi is done with it
	extraStop []func(context.Context) error
	httpAddr  string

	store   *storeHook   // nil without DataDir
	metrics *metricsHook // nil without HTTPAddr
	tracer  *tracer      // nil without Trace
}

// New validates opts and builds the broker without binding anything.
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
		epoch:  time.Now(),
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

	auth, err := newAuthHook(b, opts)
	if err != nil {
		return nil, authFileErr(opts, err)
	}
	b.auth = auth

	b.fix = &fixHook{b: b, predecessorWait: defaultPredecessorWait}
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities:             b.limits.capabilities(),
		ClientNetWriteBufferSize: b.limits.WriteBufferSize,
		ClientNetReadBufferSize:  b.limits.ReadBufferSize,
		// mochi's own log is noisy at Info (one line per hook and listener)
		// and at Warn (one line per dropped message); we log the events that
		// matter ourselves, once, with the reason.
		Logger:                 slog.New(slog.NewTextHandler(opts.Log, &slog.HandlerOptions{Level: slog.LevelError})),
		SysTopicResendInterval: 10,
	})
	if b.fix.pendingWills, err = mochiPendingWills(b.srv); err != nil {
		return nil, err
	}
	bp, err := newBackpressureHook(b.epoch)
	if err != nil {
		return nil, err
	}
	b.bp = bp
	bp.evicted = func() {
		// Counted as mochi counts its own queue-full drops.
		atomic.AddInt64(&b.srv.Info.MessagesDropped, 1)
		if b.metrics != nil {
			b.metrics.droppedQueueFull.Add(1)
		}
	}
	// The back-pressure hook must come before auth: it sees every delivery
	// in OnACLCheck and always leaves the answer to the hooks after it.
	hooks := []mqtt.Hook{bp, auth, b.fix}
	for _, h := range hooks {
		if err := b.srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("add hook %s: %w", h.ID(), err)
		}
	}
	if err := b.addOpsHooks(); err != nil {
		return nil, err
	}
	return b, nil
}

// authFileErr names the option whose file could not be used. The auth hook
// reads the password file first, so an error mentioning neither file path
// comes from it.
func authFileErr(o Options, err error) error {
	if o.ACLFile != "" && strings.Contains(err.Error(), "acl file") {
		return optionErr("acl-file", "check the file given with --acl-file (mosquitto acl_file syntax)", err)
	}
	return optionErr("password-file", "check the file given with --password-file (make one with 'mqtk broker passwd FILE USER')", err)
}

// Server exposes the embedded mochi server, for hooks that need it.
func (b *Broker) Server() *mqtt.Server { return b.srv }

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
		if err := b.srv.AddListener(ln); err != nil {
			return fmt.Errorf("add listener %s: %w", ln.info.URL(), err)
		}
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
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
// shutting down), closes every connection and stops the hooks (flushing the
// store). It is idempotent and returns when everything has stopped or ctx
// ends, whichever is first: it never hangs, even with clients that do not
// read (mochi's own Close can block forever, upstream #424).
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
	started := b.started
	lns := b.lns
	b.mu.Unlock()

	go func() {
		defer close(b.closed)
		b.closeErr = b.shutdown(started, lns)
	}()
	select {
	case <-b.closed:
		return b.closeErr
	case <-ctx.Done():
		return fmt.Errorf("close broker: %w", ctx.Err())
	}
}

// shutdown runs the ordered stop. Order matters because of mochi #541 and
// #424: no connection may enter mochi (ClientsWg.Add) while mochi's Close
// waits on ClientsWg, and no client may be stuck in a blocking write when
// mochi tries to send it DISCONNECT.
func (b *Broker) shutdown(started bool, lns []*listener) error {
	var errs []error
	// 1. Stop accepting. serveConn refuses new connections once closing is set.
	for _, l := range lns {
		l.closeListener()
	}
	for _, l := range lns {
		l.wait()
	}
	// 2. Bound every pending write so a client that stopped reading cannot
	// hold its write lock (and our DISCONNECT) forever.
	b.mu.Lock()
	conns := make([]*trackedConn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	for _, c := range conns {
		c.shuttingDown()
	}
	// 3. DISCONNECT 0x8B to MQTT 5 clients [MQTT-3.14.2-1]. In 3.1.1 only
	// the client sends DISCONNECT, and closing the connection is the
	// signal; mochi would write one anyway (mosquitto_sub -V 311 then
	// reports a protocol error), so those are only stopped.
	if started {
		for _, cl := range b.srv.Clients.GetAll() {
			if cl.Net.Inline || cl.Closed() {
				continue
			}
			if cl.Properties.ProtocolVersion < 5 {
				cl.Stop(packets.ErrServerShuttingDown)
				continue
			}
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	// 4. Close whatever is left (connections still in CONNECT, TLS handshakes).
	for _, c := range conns {
		_ = c.Close()
	}
	b.connWG.Wait()
	// 5. Now mochi's Close has nothing to wait for: stop its loop and the
	// hooks (the store flushes here).
	if started {
		if err := b.srv.Close(); err != nil {
			errs = append(errs, err)
		}
	} else {
		_ = b.srv.Close()
	}
	for _, stop := range b.extraStop {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := stop(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	return errors.Join(errs...)
}

// Reload re-reads the password file, the ACL file and the TLS certificates.
// Existing connections are kept; new ones see the new settings. On error the
// previous settings stay in force.
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

// Run starts a broker with opts, calls ready (if not nil) once it accepts
// connections, and serves until ctx is cancelled; then it closes cleanly.
func Run(ctx context.Context, opts Options, ready func(*Broker)) error {
	b, err := New(opts)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		_ = b.Close(context.Background())
		return err
	}
	if ready != nil {
		ready(b)
	}
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.Close(cctx)
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

// addOpsHooks adds the persistence, trace and metrics hooks the options ask
// for. The store must be in place before Serve, which loads from it.
func (b *Broker) addOpsHooks() error {
	if b.opts.DataDir != "" {
		st, err := newStoreHook(b.opts.DataDir)
		if err != nil {
			return fmt.Errorf("open data directory %s: %w", b.opts.DataDir, err)
		}
		b.store = st
		if err := b.srv.AddHook(st, nil); err != nil {
			_ = st.Close()
			return fmt.Errorf("add store hook: %w", err)
		}
	}
	if b.opts.Trace {
		b.tracer = newTracer(b.opts.Log, b.opts.LogFormat == "json", b.opts.Color)
	}
	if b.opts.HTTPAddr != "" {
		b.metrics = newMetricsHook()
		if err := b.srv.AddHook(b.metrics, nil); err != nil {
			return fmt.Errorf("add metrics hook: %w", err)
		}
	}
	return nil
}

// startOps starts the HTTP endpoint once the broker serves.
func (b *Broker) startOps(ctx context.Context) error {
	if b.opts.HTTPAddr == "" {
		return nil
	}
	addr, stop, err := serveHTTP(ctx, b.opts.HTTPAddr, b.srv, b.metrics, b.opts.Pprof)
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

// authFailed counts a failed login in the metrics, when they are on.
func (b *Broker) authFailed() {
	if b.metrics != nil {
		b.metrics.authFailed()
	}
}
