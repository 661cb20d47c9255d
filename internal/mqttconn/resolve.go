package mqttconn

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
)

// ParseVersion accepts the spellings mosquitto's clients and MQTTX use.
func ParseVersion(s string) (Version, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "5", "5.0", "mqttv5", "v5":
		return V5, nil
	case "311", "3.1.1", "mqttv311", "v311", "4":
		return V311, nil
	case "31", "3.1", "mqttv31", "v31", "3":
		return V31, nil
	case "auto":
		return VAuto, nil
	}
	return 0, clierr.Usagef("unknown protocol version %q", s).Hintf("use 5, 311 (3.1.1), 31 (3.1) or auto (5, else 3.1.1)")
}

// String returns the version as people write it.
func (v Version) String() string {
	switch v {
	case V5:
		return "5"
	case V311:
		return "3.1.1"
	case V31:
		return "3.1"
	case VAuto:
		return "auto"
	}
	return fmt.Sprintf("level %d", byte(v))
}

// Resolve fills the derived fields: it splits URL into scheme, host, port,
// credentials and topic or WebSocket path (fields already set win), turns TLS
// on for TLS schemes and TLS files, and applies default host and port.
// It validates what can be validated without the network.
func (c *Config) Resolve() error {
	if c.Version == 0 {
		c.Version = V5
	}
	if c.Version != V5 && c.Version != V311 && c.Version != V31 && c.Version != VAuto {
		return clierr.Usagef("unsupported protocol version %d", c.Version)
	}
	scheme := "tcp"
	if c.URL != "" {
		if !strings.Contains(c.URL, "://") && !strings.HasPrefix(strings.ToLower(c.URL), "unix:") {
			// host:port parses as scheme "host" with an opaque part, so say
			// what is really missing rather than "unknown scheme".
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("URL %q has no scheme", c.URL),
				Hints: []string{fmt.Sprintf("write it as mqtt://%s (or mqtts://, ws://, wss://, unix:///path)", c.URL)}}
		}
		u, err := url.Parse(c.URL)
		if err != nil || u.Scheme == "" {
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("invalid URL %q", c.URL),
				Hints: []string{"write it as mqtt://host:1883, mqtts://host:8883, ws://host:8080/mqtt, wss://…, or unix:///path/to/socket"}}
		}
		switch strings.ToLower(u.Scheme) {
		case "mqtt", "tcp":
			scheme = "tcp"
		case "mqtts", "ssl", "tls":
			scheme = "tls"
		case "ws":
			scheme = "ws"
		case "wss":
			scheme = "wss"
		case "unix":
			scheme = "unix"
		default:
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("unknown URL scheme %q in %q", u.Scheme, c.URL),
				Hints: []string{"use mqtt, tcp, mqtts, ssl, tls, ws, wss or unix"}}
		}
		if u.User != nil {
			if c.Username == "" {
				c.Username = u.User.Username()
			}
			if p, ok := u.User.Password(); ok && c.Password == "" {
				c.Password = p
			}
		}
		if scheme == "unix" {
			if c.SocketPath == "" {
				c.SocketPath = u.Host + u.Path
			}
		} else {
			if c.Host == "" {
				c.Host = u.Hostname()
			}
			if p := u.Port(); p != "" && c.Port == 0 {
				n, err := strconv.Atoi(p)
				if err != nil {
					return clierr.Usagef("invalid port %q in URL %q", p, c.URL)
				}
				c.Port = n
			}
			path := u.Path
			switch scheme {
			case "ws", "wss":
				if c.WSPath == "" && path != "" {
					c.WSPath = path
				}
			default:
				// mosquitto's -L mqtt://host/a/b names the topic a/b.
				if t := strings.TrimPrefix(path, "/"); t != "" && c.Topic == "" {
					c.Topic = t
				}
			}
		}
	} else if c.SocketPath != "" {
		scheme = "unix"
	}
	if c.NoTLS {
		if scheme == "tls" || scheme == "wss" {
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--no-tls with the TLS URL %q", c.URL),
				Hints: []string{"use mqtt:// or ws:// with --no-tls, or drop --no-tls"}}
		}
		// mosquitto 2.1: --no-tls undoes TLS options given elsewhere.
		c.TLS = TLS{}
	}
	if c.WebSocket && scheme == "tcp" {
		scheme = "ws"
	}
	tlsFiles := c.TLS.CAFile != "" || c.TLS.CAPath != "" || c.TLS.CertFile != "" || c.TLS.Insecure || c.TLS.OSCerts
	switch scheme {
	case "tls", "wss":
		c.TLS.Enabled = true
	case "tcp":
		if c.TLS.Enabled || tlsFiles {
			c.TLS.Enabled = true
			scheme = "tls"
		}
	case "ws":
		if c.TLS.Enabled || tlsFiles {
			c.TLS.Enabled = true
			scheme = "wss"
		}
	}
	c.Scheme = scheme
	if scheme == "unix" {
		if c.SocketPath == "" {
			return clierr.Usagef("unix URL has no socket path").Hintf("write unix:///path/to/socket")
		}
		return c.validate()
	}
	if c.Host == "" {
		c.Host = "localhost"
	}
	if c.Port == 0 {
		c.Port = map[string]int{"tcp": 1883, "tls": 8883, "ws": 80, "wss": 443}[scheme]
	}
	if c.Port < 1 || c.Port > 65535 {
		return clierr.Usagef("port %d out of range 1..65535", c.Port)
	}
	if (scheme == "ws" || scheme == "wss") && c.WSPath == "" {
		c.WSPath = "/mqtt"
	}
	if c.SRV && scheme != "tcp" && scheme != "tls" {
		return clierr.Usagef("-S looks up _mqtt._tcp or _secure-mqtt._tcp records, which name MQTT over TCP, not %s", scheme).
			Hintf("drop -S, or connect with mqtt:// or mqtts://")
	}
	return c.validate()
}

func (c *Config) validate() error {
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--cert and --key go together"),
			Hints: []string{"give both the client certificate and its private key"}}
	}
	switch c.TLS.MinVersion {
	case "", "1.1", "1.2", "1.3", "tlsv1.1", "tlsv1.2", "tlsv1.3":
	default:
		return clierr.Usagef("unsupported --tls-version %q", c.TLS.MinVersion).Hintf("use tlsv1.3, tlsv1.2 or tlsv1.1 (or 1.3, 1.2, 1.1)")
	}
	if c.TLS.Ciphers != "" {
		if _, err := ParseCiphers(c.TLS.Ciphers); err != nil {
			return err
		}
	}
	if c.Proxy != "" {
		if c.Scheme == "unix" {
			return clierr.Usagef("--proxy does not apply to a unix socket").Hintf("drop --proxy or connect over TCP")
		}
		if _, err := ParseProxy(c.Proxy); err != nil {
			return err
		}
	}
	if c.BindAddress != "" && c.Scheme == "unix" {
		return clierr.Usagef("-A (bind address) does not apply to a unix socket").Hintf("drop -A or connect over TCP")
	}
	if c.KeepAlive < 0 || c.KeepAlive.Seconds() > 65535 {
		return clierr.Usagef("keepalive of %d seconds is out of range", int64(c.KeepAlive.Seconds())).Hintf("give 0..65535 seconds (-k 60 is usual; 0 turns keepalive off)")
	}
	if c.Will != nil {
		if c.Will.Topic == "" {
			return clierr.Usagef("a will needs --will-topic")
		}
		if c.Will.QoS > 2 {
			return clierr.Usagef("--will-qos %d out of range 0..2", c.Will.QoS)
		}
	}
	// -V auto may keep MQTT 5: -x is checked by Dial if it falls back.
	if c.SessionExpiry != nil && c.Version != V5 && c.Version != VAuto {
		return clierr.Usagef("-x/--session-expiry is an MQTT 5 feature").Hintf("drop -x or use -V 5")
	}
	if c.Version == V311 || c.Version == V31 {
		if !c.Props.Empty() || (c.Will != nil && c.Will.hasProps()) {
			return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("properties (-D) are MQTT 5, and MQTT %s has none", c.Version),
				Hints: []string{"drop -V (mqtk speaks MQTT 5 by default) or the -D options"}}
		}
		if c.ClientID == "" && c.NoClean {
			return clierr.Usagef("a persistent session (-c) needs a client id (-i) with MQTT %s", c.Version)
		}
	}
	if c.Version == VAuto && c.ClientID == "" && c.NoClean {
		return clierr.Usagef("a persistent session (-c) needs a client id (-i) with -V auto, which may connect with MQTT 3.1.1")
	}
	// With MQTT 5, -c alone asks for a session that never expires; under a
	// random client id nobody could resume it, and it would stay on the
	// broker for good (mosquitto_sub refuses the same).
	if c.Version == V5 && c.NoClean && c.ClientID == "" && (c.SessionExpiry == nil || *c.SessionExpiry >= time.Duration(math.MaxUint32)*time.Second) {
		return clierr.Usagef("a persistent session (-c) with a random client id could never be resumed, and with MQTT 5 it would never expire on the broker").Hintf("give a client id with -i ID, or a finite lifetime with -x (e.g. -x 1h)")
	}
	// [MQTT-3.14.2-2] a session that ended with the connection cannot be
	// given a lifetime at DISCONNECT.
	if d := c.Props.DisconnectSessionExpiry; d != nil && *d != 0 && sessionExpiry(c) == 0 {
		return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("a DISCONNECT session expiry of %d s needs a non-zero session expiry in CONNECT", *d),
			Hints: []string{"add -x SECONDS (or -c), or drop -D disconnect session-expiry-interval"}}
	}
	if c.Version == V31 && len(c.ClientID) > 23 {
		return clierr.Usagef("client id %q is longer than the 23 bytes MQTT 3.1 allows", c.ClientID)
	}
	return nil
}

// Addr returns host:port, or the socket path for unix.
func (c *Config) Addr() string {
	if c.Scheme == "unix" {
		return c.SocketPath
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// String returns the broker URL this Config dials, without credentials.
func (c *Config) String() string {
	switch c.Scheme {
	case "unix":
		return "unix://" + c.SocketPath
	case "ws", "wss":
		return c.Scheme + "://" + c.Addr() + c.WSPath
	case "tls":
		return "mqtts://" + c.Addr()
	}
	return "mqtt://" + c.Addr()
}
