package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/ctxio"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// connFlags are the connection flags shared by pub, sub and bench, bound
// once here so that every command spells and parses them the same way.
type connFlags struct {
	a     *app
	flags *pflag.FlagSet
	names []string // long names of the flags bound here, in order

	url, host, version, id, idPrefix, keepalive, sessionExpiry string
	port                                                       int
	noClean                                                    bool
	username, password, passwordFile                           string
	passwordPrompt                                             bool
	willTopic, willPayload                                     string
	willQoS                                                    int
	willRetain                                                 bool
	tls, insecure                                              bool
	cafile, capath, cert, key, tlsVersion, sni                 string
	alpn                                                       []string
	wsPath                                                     string
	wsHeaders                                                  []string
	connectTimeout                                             time.Duration
	debug                                                      bool
	profile                                                    string
	props                                                      *propertyFlag // -D, on commands that have it

	// mosquitto's transport options.
	proxy, bindAddress, unix, ciphers, keylog string
	nodelay, ws, noTLS, osCerts               bool
	// -o: mosquitto 2.1's options file, applied once before anything
	// reads the flags (see applyOptionsFile).
	optionsFile string
	optsDone    bool
	// mosquitto options Go's TLS cannot honour: accepted, then refused
	// with the reason (see refuseUnsupported).
	psk, pskIdentity, keyform, tlsEngine, tlsEngineKpass string
	// mosquitto options mqtk does not do yet, refused the same way.
	srv, mptcp bool
}

// flagAliases are mosquitto's other spellings of connection flags; pflag
// maps them to mqtk's names before parsing, so both set the same flag.
func flagAliases(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	switch name {
	case "pw":
		name = "password"
	case "disable-clean-session":
		name = "no-clean"
	case "tls-alpn":
		name = "alpn"
	}
	return pflag.NormalizedName(name)
}

// addConnFlags binds the shared connection flags on cmd. keep lists
// shorthand letters the command uses for something else (bench keeps -c for
// clients and -d for duration, as load tools do): those flags keep only
// their long form there.
func addConnFlags(cmd *cobra.Command, a *app, keep ...string) *connFlags {
	f := &connFlags{a: a, flags: cmd.Flags()}
	fs := cmd.Flags()
	short := func(s string) string {
		if slices.Contains(keep, s) {
			return ""
		}
		return s
	}
	str := func(p *string, name, sh, def, usage string) {
		fs.StringVarP(p, name, short(sh), def, usage)
		f.names = append(f.names, name)
	}
	boolean := func(p *bool, name, sh, usage string) {
		fs.BoolVarP(p, name, short(sh), false, usage)
		f.names = append(f.names, name)
	}
	str(&f.url, "url", "L", "", "broker URL: mqtt://[user[:pass]@]host[:port][/topic], mqtts://, ws://host:port/path, wss://, unix:///path")
	str(&f.host, "host", "h", "", "broker host (default localhost)")
	fs.IntVarP(&f.port, "port", short("p"), 0, "broker port (default 1883; 8883 with TLS; 80/443 for ws/wss)")
	f.names = append(f.names, "port")
	str(&f.version, "protocol-version", "V", "5", "MQTT version: 5, 311 (3.1.1), 31 (3.1), or auto (5, and 3.1.1 when the broker refuses 5)")
	str(&f.id, "id", "i", "", "client id (default: mqtk- plus random characters)")
	str(&f.idPrefix, "id-prefix", "I", "", "client id prefix; random characters are appended")
	str(&f.keepalive, "keepalive", "k", "60", "keepalive in seconds (or a duration such as 2m)")
	boolean(&f.noClean, "no-clean", "c", "persistent session: keep subscriptions and queued messages across connections (also --disable-clean-session)")
	str(&f.sessionExpiry, "session-expiry", "x", "", "MQTT 5 session expiry in seconds or a duration; -1, ∞ or 'never' for no expiry")
	str(&f.username, "username", "u", "", "user name")
	str(&f.password, "password", "P", "", "password, also --pw (prefer MQTK_PASSWORD, --password-file or --password-prompt: flags show in ps)")
	str(&f.passwordFile, "password-file", "", "", "read the password from the first line of this file")
	boolean(&f.passwordPrompt, "password-prompt", "", "ask for the password on the terminal, without echo")
	str(&f.willTopic, "will-topic", "", "", "topic of the last-will message")
	str(&f.willPayload, "will-payload", "", "", "payload of the last-will message")
	fs.IntVar(&f.willQoS, "will-qos", 0, "QoS of the last-will message")
	f.names = append(f.names, "will-qos")
	boolean(&f.willRetain, "will-retain", "", "retain the last-will message")
	boolean(&f.tls, "tls", "", "use TLS with the system's CA certificates")
	str(&f.cafile, "cafile", "", "", "CA certificate file (PEM) to verify the broker; implies TLS")
	str(&f.capath, "capath", "", "", "directory of CA certificates (PEM); implies TLS")
	str(&f.cert, "cert", "", "", "client certificate (PEM) for mutual TLS; needs --key")
	str(&f.key, "key", "", "", "client private key (PEM)")
	boolean(&f.insecure, "insecure", "", "do not verify the broker's certificate (testing only); implies TLS")
	str(&f.tlsVersion, "tls-version", "", "", "lowest TLS version to use, as mosquitto's clients take it: tlsv1.2 (default; TLS 1.3 when the broker has it), tlsv1.3, or tlsv1.1")
	fs.StringSliceVar(&f.alpn, "alpn", nil, "ALPN protocols to offer, comma-separated (also --tls-alpn)")
	f.names = append(f.names, "alpn")
	str(&f.sni, "sni", "", "", "server name for SNI and certificate verification (default: the host)")
	str(&f.wsPath, "ws-path", "", "", "WebSocket path (default /mqtt)")
	fs.StringArrayVar(&f.wsHeaders, "ws-header", nil, "extra WebSocket handshake header 'Key: Value' (repeatable)")
	f.names = append(f.names, "ws-header")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second, "give up connecting after this long")
	f.names = append(f.names, "connect-timeout")
	boolean(&f.debug, "debug", "d", "print every MQTT packet sent and received to stderr")
	fs.StringVar(&f.profile, "profile", "", "connection profile from $XDG_CONFIG_HOME/mqtk/config.yaml (also MQTK_PROFILE)")

	str(&f.unix, "unix", "", "", "connect through this unix socket instead of TCP (as -L unix://PATH); wins over -h and -p")
	boolean(&f.ws, "ws", "", "MQTT over WebSocket to -h/-p (wss with TLS; path --ws-path, default /mqtt; port 80, 443 with TLS)")
	str(&f.proxy, "proxy", "", "", "reach the broker through a proxy: socks5h://[user:pass@]host[:1080] (the proxy resolves names), socks5://, or http://[user:pass@]host:port (HTTP CONNECT)")
	str(&f.bindAddress, "bind-address", "A", "", "local address to connect from (mosquitto's -A)")
	boolean(&f.nodelay, "nodelay", "", "accepted for mosquitto scripts: mqtk always disables Nagle's algorithm (TCP_NODELAY)")
	boolean(&f.osCerts, "tls-use-os-certs", "", "trust the system's CA certificates (alone: as --tls; with --cafile: both)")
	str(&f.ciphers, "ciphers", "", "", "TLS 1.2 cipher suites, OpenSSL or IANA names separated by ':' (TLS 1.3 suites are always on)")
	str(&f.keylog, "tls-keylog", "", "", "append TLS session keys to this file (NSS key log format, for Wireshark)")
	boolean(&f.noTLS, "no-tls", "", "no TLS, whatever the TLS options given elsewhere (options file, profile, environment) say")
	fs.StringVarP(&f.optionsFile, "options-file", short("o"), "", "read options from this file first: one per line, as on the command line ('-p 1883', '--cafile ca.pem'); # starts a comment; the command line wins")
	// Refused with a reason at run time, never "unknown flag"; hidden
	// from --help, which lists only what works.
	for _, r := range []struct {
		p    *string
		name string
	}{{&f.psk, "psk"}, {&f.pskIdentity, "psk-identity"}, {&f.keyform, "keyform"}, {&f.tlsEngine, "tls-engine"}, {&f.tlsEngineKpass, "tls-engine-kpass-sha1"}} {
		fs.StringVar(r.p, r.name, "", "not supported by Go's TLS (see the error it gives)")
		_ = fs.MarkHidden(r.name)
	}
	fs.BoolVarP(&f.srv, "srv", short("S"), false, "find the broker with a DNS SRV lookup of _mqtt._tcp.HOST (_secure-mqtt._tcp.HOST with TLS), as mosquitto's clients do")
	fs.BoolVar(&f.mptcp, "mptcp", false, "not supported: Multipath TCP (see the error it gives)")
	_ = fs.MarkHidden("mptcp")
	fs.SetNormalizeFunc(flagAliases)
	// The options file must be read before any RunE reads its flags
	// (bench reads its own before calling config).
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(c, args); err != nil {
				return err
			}
		}
		return f.applyOptionsFile()
	}
	return f
}

// refuseUnsupported explains the mosquitto options that need OpenSSL
// features Go's crypto/tls does not have.
func (f *connFlags) refuseUnsupported() error {
	certs := "use certificates instead: mqtk tlsgen makes a CA, a server and a client certificate (--cafile, --cert, --key)"
	switch {
	case f.flags.Changed("psk") || f.flags.Changed("psk-identity"):
		return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("--psk/--psk-identity (TLS-PSK) are not supported: Go's TLS has no pre-shared-key cipher suites"),
			Hints: []string{certs}}
	case f.flags.Changed("keyform") && !strings.EqualFold(f.keyform, "pem"):
		return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--keyform %s is not supported: Go's TLS reads keys from PEM files only, not from OpenSSL engines", f.keyform),
			Hints: []string{"export the key to a PEM file for --key (--keyform pem is the default and is accepted)"}}
	case f.flags.Changed("tls-engine") || f.flags.Changed("tls-engine-kpass-sha1"):
		return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("--tls-engine/--tls-engine-kpass-sha1 are not supported: OpenSSL engines (TPM, HSM) are not available to Go's TLS"),
			Hints: []string{"give the client key as a PEM file with --key"}}
	case f.mptcp:
		return &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("--mptcp (Multipath TCP) is not supported yet: mqtk connects over plain TCP"),
			Hints: []string{"leave --mptcp out; the connection works the same over TCP"}}
	}
	return nil
}

// envName maps a flag to its environment variable: --cafile → MQTK_CAFILE.
func envName(flag string) string {
	return "MQTK_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// config builds the Config with precedence flag > MQTK_* environment >
// profile > default, then resolves and validates it. Call it from RunE.
func (f *connFlags) config(ctx context.Context) (mqttconn.Config, error) {
	if err := f.applyOptionsFile(); err != nil {
		return mqttconn.Config{}, err
	}
	if err := f.refuseUnsupported(); err != nil {
		return mqttconn.Config{}, err
	}
	getenv := f.a.getenv
	name := f.profile
	if name == "" {
		name = getenv("MQTK_PROFILE")
	}
	prof, err := mqttconn.LoadProfile(mqttconn.ProfilePath(getenv), name)
	if err != nil {
		return mqttconn.Config{}, err
	}
	if prof != nil {
		for _, w := range prof.Warnings {
			f.a.io.Warnf("%s", w)
		}
		for k := range prof.Values {
			if !slices.Contains(f.names, k) {
				return mqttconn.Config{}, clierr.Usagef("profile %q in %s has unknown key %q: keys are the long names of connection flags (url, host, port, username, cafile, ...)", prof.Name, prof.Path, k)
			}
		}
	}
	// A URL names the whole address. Where it comes from a stronger source
	// than a host, port or credential, that weaker value would otherwise
	// still override the URL's own part (explicit host and port win over
	// the URL in Resolve), so `-L mqtt://test:1883` with a profile holding
	// host: prod would connect to prod. Weaker address parts are dropped.
	const (
		fromNothing = iota
		fromProfile
		fromEnv
		fromFlag
	)
	urlFrom, urlValue := fromNothing, ""
	switch {
	case f.flags.Changed("url"):
		urlFrom, urlValue = fromFlag, f.url
	case getenv(envName("url")) != "":
		urlFrom, urlValue = fromEnv, getenv(envName("url"))
	case prof != nil && len(prof.Values["url"]) > 0:
		urlFrom, urlValue = fromProfile, prof.Values["url"][0]
	}
	// Credentials are part of the address only when the URL names a user:
	// `--profile prod -L mqtts://prod:8883` keeps the profile's login.
	urlHasUser := false
	if u, err := url.Parse(urlValue); err == nil && u.User != nil {
		urlHasUser = true
	}
	if urlFrom == fromFlag {
		for _, n := range []string{"host", "port"} {
			if f.flags.Changed(n) {
				f.a.io.Warnf("--%s overrides the %s in --url %s", n, n, f.url)
			}
		}
	}
	for _, n := range f.names {
		fl := f.flags.Lookup(n)
		if fl == nil || fl.Changed {
			continue
		}
		var vals []string
		var from string
		rank := fromNothing
		if v, ok := lookupEnv(getenv, envName(n)); ok {
			vals, from, rank = []string{v}, envName(n), fromEnv
		} else if prof != nil && len(prof.Values[n]) > 0 {
			vals, from, rank = prof.Values[n], fmt.Sprintf("profile %q", prof.Name), fromProfile
		}
		if rank < urlFrom && addressPart(n, urlHasUser) {
			continue
		}
		for _, v := range vals {
			if err := fl.Value.Set(v); err != nil {
				why := err.Error()
				if strings.Contains(why, "strconv.") {
					why = "not a number"
				}
				e := clierr.Usagef("invalid %s %q from %s: %s", n, v, from, why)
				// The value's own advice (a flag type may give some) first,
				// then where to put it right.
				e.Hints = append(e.Hints, clierr.HintsOf(err)...)
				return mqttconn.Config{}, e.Hintf("fix or remove it in %s", from)
			}
		}
	}
	// --unix and a URL both name where to connect: the one from the
	// stronger source wins (a flag over the environment or a profile),
	// and two from the same kind of source are a usage error.
	if f.unix != "" && f.url != "" {
		switch {
		case f.flags.Changed("unix") && !f.flags.Changed("url"):
			f.url = ""
		default:
			return mqttconn.Config{}, clierr.Usagef("--unix %s and the URL %s both say where to connect", f.unix, f.url).Hintf("give one of them")
		}
	}
	return f.build(ctx)
}

// addressPart reports whether a connection flag is part of what a URL
// says: where to connect, and as whom when it names a user.
func addressPart(flag string, urlHasUser bool) bool {
	switch flag {
	case "host", "port", "ws-path", "unix":
		return true
	case "username", "password", "password-file":
		return urlHasUser
	}
	return false
}

func lookupEnv(getenv func(string) string, k string) (string, bool) {
	v := getenv(k)
	return v, v != ""
}

func (f *connFlags) build(ctx context.Context) (mqttconn.Config, error) {
	c := mqttconn.Default()
	var err error
	if c.Version, err = mqttconn.ParseVersion(f.version); err != nil {
		return c, err
	}
	if f.flags.Changed("port") && (f.port < 1 || f.port > 65535) {
		// 0 would otherwise silently mean "the default port".
		return c, clierr.Usagef("-p %d is not a port", f.port).Hintf("give 1..65535, or leave -p out for the default (1883, 8883 with TLS)")
	}
	if f.id != "" && f.idPrefix != "" {
		// As mosquitto's clients: one of them would silently lose.
		return c, &clierr.Error{Kind: clierr.KindUsage, Err: errors.New("-i/--id and -I/--id-prefix cannot be used together"),
			Hints: []string{"give the whole client id with -i, or a prefix with -I (random characters follow it)"}}
	}
	c.URL, c.Host, c.Port = f.url, f.host, f.port
	c.ClientID, c.IDPrefix, c.NoClean = f.id, f.idPrefix, f.noClean
	if c.KeepAlive, err = parseSeconds("keepalive", f.keepalive); err != nil {
		return c, err
	}
	if f.sessionExpiry != "" {
		var d time.Duration
		switch strings.ToLower(f.sessionExpiry) {
		case "-1", "never", "infinity", "inf", "∞":
			d = time.Duration(math.MaxUint32) * time.Second
		default:
			if d, err = parseSeconds("session-expiry", f.sessionExpiry); err != nil {
				return c, err
			}
		}
		c.SessionExpiry = &d
	}
	c.Username = f.username
	if c.Password, err = f.resolvePassword(ctx); err != nil {
		return c, err
	}
	if f.willTopic != "" || f.willPayload != "" || f.flags.Changed("will-qos") || f.willRetain {
		if f.willQoS < 0 || f.willQoS > 2 {
			return c, clierr.Usagef("--will-qos %d out of range", f.willQoS).Hintf("use 0, 1 or 2")
		}
		c.Will = &mqttconn.Will{Topic: f.willTopic, Payload: []byte(f.willPayload), QoS: byte(f.willQoS), Retain: f.willRetain}
	}
	c.TLS = mqttconn.TLS{
		Enabled: f.tls, CAFile: f.cafile, CAPath: f.capath, CertFile: f.cert, KeyFile: f.key,
		Insecure: f.insecure, MinVersion: strings.TrimPrefix(strings.ToLower(f.tlsVersion), "tlsv"),
		ALPN: f.alpn, ServerName: f.sni,
		OSCerts: f.osCerts, Ciphers: f.ciphers, KeyLogFile: f.keylog,
	}
	c.SocketPath, c.WebSocket, c.NoTLS = f.unix, f.ws, f.noTLS
	c.Proxy, c.BindAddress = f.proxy, f.bindAddress
	c.SRV = f.srv
	c.WSPath = f.wsPath
	if len(f.wsHeaders) > 0 {
		c.WSHeaders = http.Header{}
		for _, h := range f.wsHeaders {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return c, clierr.Usagef("--ws-header %q is not a header", h).Hintf("write it as 'Key: Value'")
			}
			c.WSHeaders.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	if f.connectTimeout <= 0 {
		return c, clierr.Usagef("--connect-timeout must be positive, got %s", f.connectTimeout)
	}
	c.ConnectTimeout = f.connectTimeout
	if f.debug {
		c.Debug = f.a.io.Err
	}
	// Before Resolve, which checks the properties against -V.
	if err := f.props.applyConn(&c, f.a); err != nil {
		return c, err
	}
	if err := c.Resolve(); err != nil {
		return c, err
	}
	return c, nil
}

// resolvePassword picks the password from -P/MQTK_PASSWORD/profile (already
// in f.password), --password-file or --password-prompt; more than one
// explicit source is a usage error rather than a silent choice.
func (f *connFlags) resolvePassword(ctx context.Context) (string, error) {
	sources := 0
	for _, set := range []bool{f.flags.Changed("password"), f.passwordFile != "", f.passwordPrompt} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		return "", clierr.Usagef("the password is given by more than one of -P, --password-file and --password-prompt").Hintf("give the password one way only")
	}
	switch {
	case f.passwordFile != "":
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return "", &clierr.Error{Kind: clierr.KindUsage, Op: "read --password-file", Err: err}
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimRight(line, "\r"), nil
	case f.passwordPrompt:
		return promptPassword(ctx, f.a, f.username)
	}
	return f.password, nil
}

// promptPassword reads a password without echo from the terminal; it
// prefers /dev/tty so that stdin stays free for payloads (pub -l).
func promptPassword(ctx context.Context, a *app, user string) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		if f, ok := a.io.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			tty = f
		} else {
			return "", clierr.Usagef("--password-prompt needs a terminal").Hintf("use --password-file or MQTK_PASSWORD in scripts")
		}
	} else {
		defer tty.Close()
	}
	label := "password"
	if user != "" {
		label = "password for " + user
	}
	if term.IsTerminal(int(tty.Fd())) {
		b, err := a.askSecret(ctx, tty, label+": ")
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(b), nil
	}
	fmt.Fprintf(a.io.Err, "%s: ", label)
	b, err := ctxio.ReadLine(ctx, tty)
	line := string(b)
	if err != nil && line == "" {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// parseSeconds reads mosquitto-style whole seconds ("60") or a Go duration
// ("2m", "90s").
// maxSeconds is the longest time a time.Duration holds, in whole seconds
// (about 292 years): more would wrap around to a negative duration.
const maxSeconds = math.MaxInt64 / int64(time.Second)

func tooLong(flag, s string) error {
	return clierr.Usagef("--%s %s is too long: at most %d seconds (about 292 years)", flag, s, maxSeconds)
}

func parseSeconds(flag, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, clierr.Usagef("--%s must not be negative, got %s", flag, s)
		}
		if n > maxSeconds {
			return 0, tooLong(flag, s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, clierr.Usagef("invalid --%s %q", flag, s).Hintf("give seconds (60) or a duration (2m, 90s)")
	}
	return d, nil
}

// countAndTimeout checks -C and reads -W as sub and rr take them, as
// mosquitto_sub and mosquitto_rr do: a count of at least 1 when given,
// and a timeout in seconds (or a Go duration) above zero; "" is none.
func countAndTimeout(countSet bool, count int, timeout string) (time.Duration, error) {
	if countSet && count <= 0 {
		return 0, clierr.Usagef("-C/--count must be at least 1, got %d", count)
	}
	if timeout == "" {
		return 0, nil
	}
	d, err := parseSecondsFloat("timeout", timeout)
	if err != nil {
		return 0, err
	}
	if d == 0 {
		return 0, clierr.Usagef("-W/--timeout must be more than zero")
	}
	return d, nil
}
