package main

import (
	"context"
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
	boolean(&f.noClean, "no-clean", "c", "persistent session: keep subscriptions and queued messages across connections")
	str(&f.sessionExpiry, "session-expiry", "x", "", "MQTT 5 session expiry in seconds or a duration; -1 or 'never' for no expiry")
	str(&f.username, "username", "u", "", "user name")
	str(&f.password, "password", "P", "", "password (prefer MQTK_PASSWORD, --password-file or --password-prompt: flags show in ps)")
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
	str(&f.tlsVersion, "tls-version", "", "", "minimum TLS version: 1.2 (default) or 1.3")
	fs.StringSliceVar(&f.alpn, "alpn", nil, "ALPN protocols to offer, comma-separated")
	f.names = append(f.names, "alpn")
	str(&f.sni, "sni", "", "", "server name for SNI and certificate verification (default: the host)")
	str(&f.wsPath, "ws-path", "", "", "WebSocket path (default /mqtt)")
	fs.StringArrayVar(&f.wsHeaders, "ws-header", nil, "extra WebSocket handshake header 'Key: Value' (repeatable)")
	f.names = append(f.names, "ws-header")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second, "give up connecting after this long")
	f.names = append(f.names, "connect-timeout")
	boolean(&f.debug, "debug", "d", "print every MQTT packet sent and received to stderr")
	fs.StringVar(&f.profile, "profile", "", "connection profile from $XDG_CONFIG_HOME/mqtk/config.yaml (also MQTK_PROFILE)")
	return f
}

// envName maps a flag to its environment variable: --cafile → MQTK_CAFILE.
func envName(flag string) string {
	return "MQTK_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// config builds the Config with precedence flag > MQTK_* environment >
// profile > default, then resolves and validates it. Call it from RunE.
func (f *connFlags) config(ctx context.Context) (mqttconn.Config, error) {
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
				return mqttconn.Config{}, mqttconn.Usagef("profile %q in %s has unknown key %q: keys are the long names of connection flags (url, host, port, username, cafile, ...)", prof.Name, prof.Path, k)
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
				return mqttconn.Config{}, mqttconn.Usagef("invalid %s %q from %s: %s; fix or remove it there", n, v, from, why)
			}
		}
	}
	return f.build(ctx)
}

// addressPart reports whether a connection flag is part of what a URL
// says: where to connect, and as whom when it names a user.
func addressPart(flag string, urlHasUser bool) bool {
	switch flag {
	case "host", "port", "ws-path":
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
		return c, mqttconn.Usagef("-p %d is not a port: give 1..65535, or leave -p out for the default (1883, 8883 with TLS)", f.port)
	}
	c.URL, c.Host, c.Port = f.url, f.host, f.port
	c.ClientID, c.IDPrefix, c.NoClean = f.id, f.idPrefix, f.noClean
	if c.KeepAlive, err = parseSeconds("keepalive", f.keepalive); err != nil {
		return c, err
	}
	if f.sessionExpiry != "" {
		var d time.Duration
		switch strings.ToLower(f.sessionExpiry) {
		case "-1", "never", "infinity", "inf":
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
			return c, mqttconn.Usagef("--will-qos %d out of range: use 0, 1 or 2", f.willQoS)
		}
		c.Will = &mqttconn.Will{Topic: f.willTopic, Payload: []byte(f.willPayload), QoS: byte(f.willQoS), Retain: f.willRetain}
	}
	c.TLS = mqttconn.TLS{
		Enabled: f.tls, CAFile: f.cafile, CAPath: f.capath, CertFile: f.cert, KeyFile: f.key,
		Insecure: f.insecure, MinVersion: strings.TrimPrefix(strings.ToLower(f.tlsVersion), "tlsv"),
		ALPN: f.alpn, ServerName: f.sni,
	}
	c.WSPath = f.wsPath
	if len(f.wsHeaders) > 0 {
		c.WSHeaders = http.Header{}
		for _, h := range f.wsHeaders {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return c, mqttconn.Usagef("--ws-header %q: write it as 'Key: Value'", h)
			}
			c.WSHeaders.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	if f.connectTimeout <= 0 {
		return c, mqttconn.Usagef("--connect-timeout must be positive, got %s", f.connectTimeout)
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
		return "", mqttconn.Usagef("give the password one way only: -P, --password-file or --password-prompt")
	}
	switch {
	case f.passwordFile != "":
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return "", &mqttconn.Error{Kind: mqttconn.KindUsage, Op: "read --password-file", Err: err}
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
			return "", mqttconn.Usagef("--password-prompt needs a terminal; use --password-file or MQTK_PASSWORD in scripts")
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
	return mqttconn.Usagef("--%s %s is too long: at most %d seconds (about 292 years)", flag, s, maxSeconds)
}

func parseSeconds(flag, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, mqttconn.Usagef("--%s must not be negative, got %s", flag, s)
		}
		if n > maxSeconds {
			return 0, tooLong(flag, s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, mqttconn.Usagef("--%s %q: give seconds (60) or a duration (2m, 90s)", flag, s)
	}
	return d, nil
}
