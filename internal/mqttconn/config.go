// Package mqttconn is the connection and configuration layer shared by every
// mqtk command that talks to a broker (pub, sub, bench).
//
// A Config says how to reach a broker; Dial turns it into a Client. Two
// implementations sit behind Client — MQTT 5 on github.com/eclipse/paho.golang
// and MQTT 3.1.1/3.1 on github.com/eclipse/paho.mqtt.golang — and commands
// never learn which one they hold. Failures are classified once, here, as an
// *clierr.Error with a Kind, so every command prints and exits the same way.
package mqttconn

import (
	"io"
	"net"
	"net/http"
	"time"
)

// Version is the MQTT protocol level as carried in CONNECT.
type Version byte

// Supported protocol levels.
const (
	V31  Version = 3 // MQTT 3.1 (MQIsdp)
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

// VAuto is -V auto: MQTT 5 first, and MQTT 3.1.1 when the broker refuses 5
// as unsupported (a 3.1.1-only broker answers with return code 1). It is
// not a protocol level; Dial resolves it and Info().Version says which
// version was used. mosquitto's clients default to 3.1.1, so scripts
// written for them may meet brokers that speak nothing newer.
const VAuto Version = 0xFF

// Config is everything needed to reach one broker. The zero value is not
// ready to use: start from Default() and call Resolve once all sources
// (profile, environment, flags) have been applied.
type Config struct {
	// URL as given by -L/--url, MQTK_URL or a profile. Resolve splits it into
	// the fields below; fields set explicitly win over the URL's parts.
	URL string `yaml:"url,omitempty"`

	Scheme     string `yaml:"-"`                // after Resolve: tcp, tls, ws, wss or unix
	Host       string `yaml:"host,omitempty"`   // -h; empty means localhost
	Port       int    `yaml:"port,omitempty"`   // -p; 0 means the scheme's default
	SocketPath string `yaml:"socket,omitempty"` // unix:// path
	Topic      string `yaml:"-"`                // topic named by a mqtt(s):// URL path

	// WebSocket is mosquitto 2.1's --ws: the -h/-p address speaks MQTT
	// over WebSocket (wss with TLS), as a ws:// URL would say.
	WebSocket bool `yaml:"-"`
	// Proxy reaches the broker through a SOCKS5 (socks5h://, socks5://)
	// or HTTP CONNECT (http://) proxy; see ParseProxy.
	Proxy string `yaml:"proxy,omitempty"`
	// BindAddress is the local address of outgoing TCP connections (-A).
	BindAddress string `yaml:"bind_address,omitempty"`
	// NoTLS is mosquitto 2.1's --no-tls: TLS stays off whatever TLS
	// options say (they may come from an options file or a profile).
	NoTLS bool `yaml:"-"`

	Version   Version       `yaml:"-"`                   // -V; default V5; VAuto tries 5, then 3.1.1
	ClientID  string        `yaml:"client_id,omitempty"` // -i
	IDPrefix  string        `yaml:"id_prefix,omitempty"` // -I; a random suffix is appended
	KeepAlive time.Duration `yaml:"keepalive,omitempty"` // -k; whole seconds on the wire

	// NoClean asks for a persistent session (-c). With MQTT 5 and no
	// SessionExpiry the session never expires, as with mosquitto's clients.
	NoClean bool `yaml:"no_clean,omitempty"`
	// SessionExpiry is -x; nil means "not given".
	SessionExpiry *time.Duration `yaml:"session_expiry,omitempty"`

	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`

	Will *Will `yaml:"will,omitempty"`

	// Props are the MQTT 5 properties of CONNECT, SUBSCRIBE, UNSUBSCRIBE
	// and DISCONNECT that have no field of their own above (-D). MQTT 3.1.1
	// has no properties: Resolve refuses them with -V 311 and 31.
	Props PacketProps `yaml:"-"`

	TLS TLS `yaml:"tls,omitempty"`

	WSPath    string      `yaml:"ws_path,omitempty"` // WebSocket path; default /mqtt
	WSHeaders http.Header `yaml:"ws_headers,omitempty"`

	ConnectTimeout time.Duration `yaml:"connect_timeout,omitempty"` // default 10s

	// CoalesceWrites hands writes to a goroutine of the connection's own,
	// so that packets published while a write is under way share the next
	// system call. For publishers that send fast (bench); it costs a
	// goroutine per connection and a hand-over per write.
	CoalesceWrites bool `yaml:"-"`

	// SRV finds the broker's host and port in DNS (-S, as mosquitto's
	// clients): the SRV record _mqtt._tcp.HOST, or _secure-mqtt._tcp.HOST
	// with TLS. Resolver, when set, answers the lookup (tests); nil is the
	// system's.
	SRV      bool          `yaml:"srv,omitempty"`
	Resolver *net.Resolver `yaml:"-"`

	// Native connects with mqtk's own client on internal/packet instead of
	// the paho libraries, where it serves the config (not -V auto, not an
	// authentication exchange). bench sets it: it costs less CPU per
	// message, which a generator sharing a machine with the broker needs.
	Native bool `yaml:"-"`

	// Debug, when not nil, receives one line per MQTT packet sent or received.
	Debug io.Writer `yaml:"-"`

	// OnMessage receives every incoming PUBLISH, in order, from the
	// connection's reader goroutine. It must not block for long: the reader
	// waits for it, which is what gives a slow consumer TCP backpressure
	// instead of unbounded buffering. Set it before Dial so that retained
	// messages arriving right after SUBACK are not missed.
	OnMessage func(*Message) `yaml:"-"`

	// OnConnectionLost is called once, from a library goroutine, when an
	// established connection drops for any reason other than Disconnect.
	OnConnectionLost func(error) `yaml:"-"`
}

// Will is the last-will message registered in CONNECT.
type Will struct {
	Topic   string `yaml:"topic"`
	Payload []byte `yaml:"payload,omitempty"`
	QoS     byte   `yaml:"qos,omitempty"`
	Retain  bool   `yaml:"retain,omitempty"`

	// MQTT 5 will properties (-D will ...); nil and empty are not sent.
	DelayInterval   *uint32        `yaml:"-"` // seconds the broker waits before publishing it
	PayloadFormat   *byte          `yaml:"-"`
	MessageExpiry   *uint32        `yaml:"-"`
	ContentType     string         `yaml:"-"`
	ResponseTopic   string         `yaml:"-"`
	CorrelationData []byte         `yaml:"-"`
	UserProperties  []UserProperty `yaml:"-"`
}

// hasProps reports whether w carries any MQTT 5 property.
func (w *Will) hasProps() bool {
	return w.DelayInterval != nil || w.PayloadFormat != nil || w.MessageExpiry != nil || w.ContentType != "" ||
		w.ResponseTopic != "" || w.CorrelationData != nil || len(w.UserProperties) > 0
}

// PacketProps are MQTT 5 properties a command line may add to the packets
// the client layer sends on its own (mosquitto's -D connect, subscribe,
// unsubscribe and disconnect). PUBLISH properties travel on each Message,
// and the session expiry of CONNECT is Config.SessionExpiry.
type PacketProps struct {
	// CONNECT. ReceiveMaximum nil means mqtk's default (1024).
	ReceiveMaximum      *uint16
	MaximumPacketSize   *uint32
	TopicAliasMaximum   *uint16
	RequestResponseInfo *byte // 0 or 1
	RequestProblemInfo  *byte // 0 or 1
	AuthMethod          string
	AuthData            []byte
	ConnectUser         []UserProperty

	SubscribeUser   []UserProperty // every SUBSCRIBE
	UnsubscribeUser []UserProperty // every UNSUBSCRIBE

	// DISCONNECT sent by Disconnect.
	DisconnectSessionExpiry *uint32
	DisconnectReason        string
	DisconnectUser          []UserProperty
}

// Empty reports whether no property is set.
func (p *PacketProps) Empty() bool {
	return p.ReceiveMaximum == nil && p.MaximumPacketSize == nil && p.TopicAliasMaximum == nil &&
		p.RequestResponseInfo == nil && p.RequestProblemInfo == nil && p.AuthMethod == "" && p.AuthData == nil &&
		len(p.ConnectUser) == 0 && len(p.SubscribeUser) == 0 && len(p.UnsubscribeUser) == 0 &&
		p.DisconnectSessionExpiry == nil && p.DisconnectReason == "" && len(p.DisconnectUser) == 0
}

// TLS holds the client side of TLS. Enabled is implied by mqtts/ssl/tls/wss
// URLs and by any of the file options.
type TLS struct {
	Enabled    bool   `yaml:"enabled,omitempty"`
	CAFile     string `yaml:"cafile,omitempty"`
	CAPath     string `yaml:"capath,omitempty"`
	CertFile   string `yaml:"cert,omitempty"`
	KeyFile    string `yaml:"key,omitempty"`
	Insecure   bool   `yaml:"insecure,omitempty"`
	MinVersion string `yaml:"min_version,omitempty"` // "1.2" (default), "1.3", or "1.1" (mosquitto 2.0 allows it)
	// OSCerts trusts the system's CA certificates too when CAFile or
	// CAPath is given (mosquitto's --tls-use-os-certs); alone it is --tls.
	OSCerts bool `yaml:"os_certs,omitempty"`
	// Ciphers restricts the TLS 1.2 cipher suites: OpenSSL or IANA names
	// separated by ':' (see ParseCiphers). TLS 1.3 suites are always on,
	// as with OpenSSL's cipher list.
	Ciphers string `yaml:"ciphers,omitempty"`
	// KeyLogFile receives the session keys in NSS key log format, for
	// Wireshark (mosquitto 2.1's --tls-keylog). Lines are appended.
	KeyLogFile string   `yaml:"keylog,omitempty"`
	ALPN       []string `yaml:"alpn,omitempty"`
	ServerName string   `yaml:"sni,omitempty"` // SNI and verification name; default Host
}

// Default returns a Config holding mqtk's defaults: MQTT 5, keepalive
// 60 s, clean start, 10 s connect timeout. Host and port are left empty so
// that Resolve can tell "not given" from "given": a URL fills what flags
// left empty, then localhost and the scheme's port fill the rest.
func Default() Config {
	return Config{
		Version:        V5,
		KeepAlive:      60 * time.Second,
		ConnectTimeout: 10 * time.Second,
	}
}
