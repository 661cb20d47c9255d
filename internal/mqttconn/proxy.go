package mqttconn

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"golang.org/x/net/proxy"
)

// dialFunc opens a TCP (or unix) connection to addr.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// ParseProxy checks a --proxy URL: socks5h://[user:pass@]host:port (the
// proxy resolves the broker's name, as mosquitto's clients have it),
// socks5:// (mqtk resolves it and sends the address), or
// http://[user:pass@]host:port (an HTTP CONNECT proxy). A SOCKS proxy
// without a port is on 1080; an HTTP proxy needs its port.
func ParseProxy(raw string) (*url.URL, error) {
	hint := "write it as socks5h://[user:pass@]host:1080 or http://[user:pass@]host:3128"
	bad := func(why string) error {
		return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--proxy %q: %s", raw, why), Hints: []string{hint}}
	}
	if !strings.Contains(raw, "://") {
		return nil, bad("no scheme")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, bad("not a URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch u.Scheme {
	case "socks5", "socks5h":
		if u.Port() == "" && u.Hostname() != "" {
			u.Host = net.JoinHostPort(u.Hostname(), "1080")
		}
	case "http":
		if u.Port() == "" {
			return nil, bad("an HTTP proxy needs its port")
		}
	case "https":
		return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--proxy %q: TLS to the proxy itself (https://) is not supported", raw),
			Hints: []string{"use http://host:port: the MQTT connection inside it is still TLS with mqtts:// or wss://"}}
	case "socks4", "socks4a":
		return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--proxy %q: SOCKS4 is not supported", raw),
			Hints: []string{"use socks5h://host:port; most SOCKS proxies speak version 5"}}
	default:
		return nil, bad(fmt.Sprintf("unknown scheme %q", u.Scheme))
	}
	if u.Hostname() == "" {
		return nil, bad("no proxy host")
	}
	if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
		return nil, bad(fmt.Sprintf("port %q out of range 1..65535", u.Port()))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, bad("a proxy URL has no path or query")
	}
	return u, nil
}

// redacted is the proxy URL without its password, for messages.
func redacted(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	c.Path = ""
	return c.String()
}

// baseDialer is the dialer every TCP connection starts from: -A sets its
// local address. Go already sets TCP_NODELAY on every TCP connection, so
// mosquitto's --nodelay needs nothing here.
func baseDialer(cfg *Config) (*net.Dialer, error) {
	d := &net.Dialer{}
	if cfg.BindAddress == "" {
		return d, nil
	}
	ip := net.ParseIP(cfg.BindAddress)
	if ip == nil {
		ips, err := net.DefaultResolver.LookupIPAddr(context.Background(), cfg.BindAddress)
		if err != nil || len(ips) == 0 {
			return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("-A %q: not an address of this machine: %v", cfg.BindAddress, err),
				Hints: []string{"give one of this machine's IP addresses (or a name that resolves to one)"}}
		}
		ip = ips[0].IP
	}
	d.LocalAddr = &net.TCPAddr{IP: ip}
	return d, nil
}

// transportDialer returns how to reach cfg.Addr(): directly, or through
// cfg.Proxy. Every transport (tcp, tls, ws, wss) opens its connection
// through it, so the proxy and -A apply to all of them alike.
func transportDialer(cfg *Config) (dialFunc, error) {
	d, err := baseDialer(cfg)
	if err != nil {
		return nil, err
	}
	direct := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil && cfg.BindAddress != "" && errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, &clierr.Error{Kind: clierr.KindNetwork, Err: fmt.Errorf("cannot connect from -A %s: %w", cfg.BindAddress, err),
				Hints: []string{"-A must be an address of this machine that can reach the broker"}}
		}
		return c, err
	}
	if cfg.Proxy == "" {
		return direct, nil
	}
	pu, err := ParseProxy(cfg.Proxy)
	if err != nil {
		return nil, err
	}
	switch pu.Scheme {
	case "http":
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialHTTPConnect(ctx, direct, pu, addr)
		}, nil
	}
	var auth *proxy.Auth
	if pu.User != nil {
		pw, _ := pu.User.Password()
		auth = &proxy.Auth{User: pu.User.Username(), Password: pw}
	}
	sd, err := proxy.SOCKS5("tcp", pu.Host, auth, forwardDialer(direct))
	if err != nil {
		return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("--proxy %s: %w", redacted(pu), err)}
	}
	cd := sd.(proxy.ContextDialer) // the SOCKS5 dialer of x/net is one
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		target := addr
		if pu.Scheme == "socks5" {
			// socks5:// resolves here and hands the proxy an address;
			// socks5h:// hands it the name (x/net sends names as they are).
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if net.ParseIP(host) == nil {
				ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
				if err != nil {
					return nil, err
				}
				if len(ips) == 0 {
					return nil, &net.DNSError{Err: "no address", Name: host}
				}
				// IPv4 first: a broker on localhost more often listens
				// on 127.0.0.1 than on ::1.
				ip := ips[0].IP
				for _, a := range ips {
					if a.IP.To4() != nil {
						ip = a.IP
						break
					}
				}
				target = net.JoinHostPort(ip.String(), port)
			}
		}
		c, err := cd.DialContext(ctx, network, target)
		if err != nil {
			return nil, socksError(pu, err)
		}
		return c, nil
	}, nil
}

// forwardDialer adapts a dialFunc to the dialer x/net/proxy forwards
// through, so that -A applies to the connection to the proxy.
type forwardDialer dialFunc

func (f forwardDialer) Dial(network, addr string) (net.Conn, error) {
	return f(context.Background(), network, addr)
}

func (f forwardDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// socksError classifies what x/net's SOCKS client returns. It reports
// failures as plain strings, so the text is all there is to go on.
func socksError(pu *url.URL, err error) error {
	if isTimeout(err) || errors.Is(err, context.Canceled) {
		return err
	}
	var e *clierr.Error
	if errors.As(err, &e) {
		return err
	}
	name := redacted(pu)
	msg := err.Error()
	out := &clierr.Error{Kind: clierr.KindNetwork, Err: fmt.Errorf("through proxy %s: %w", name, err)}
	// x/net reports every failure as "socks connect tcp PROXY->TARGET:
	// ..."; a failure to reach the proxy itself is a dial error inside.
	var outer, inner *net.OpError
	proxyDown := errors.As(err, &outer) && errors.As(outer.Err, &inner) && inner.Op == "dial"
	switch {
	case proxyDown && errors.Is(err, syscall.ECONNREFUSED):
		out.Err = fmt.Errorf("the proxy %s refused the connection: %w", name, inner)
		out.Hints = []string{"is the proxy running there? check --proxy"}
	case proxyDown:
		out.Err = fmt.Errorf("cannot reach the proxy %s: %w", name, inner)
		out.Hints = []string{"check the host and port of --proxy"}
	case strings.Contains(msg, "authentication failed"):
		out.Err = fmt.Errorf("the proxy %s refused the user name or password", name)
		out.Hints = []string{"check the user:pass@ part of --proxy"}
	case strings.Contains(msg, "no acceptable authentication methods"), strings.Contains(msg, "unsupported authentication method"):
		if pu.User == nil {
			out.Err = fmt.Errorf("the proxy %s wants a login", name)
			out.Hints = []string{"give it in the URL: --proxy socks5h://user:pass@host:port"}
		} else {
			out.Err = fmt.Errorf("the proxy %s accepts none of our login methods: %v", name, err)
		}
	case strings.Contains(msg, "->"):
		out.Err = fmt.Errorf("the proxy %s could not reach the broker: %w", name, err)
		out.Hints = []string{"the address is resolved and dialled by the proxy: check -h/-p as the proxy sees them"}
	}
	return out
}

// dialHTTPConnect opens a tunnel to addr through an HTTP proxy with the
// CONNECT method (RFC 9110 section 9.3.6), with Basic credentials when the
// proxy URL carries them.
func dialHTTPConnect(ctx context.Context, dial dialFunc, pu *url.URL, addr string) (net.Conn, error) {
	name := redacted(pu)
	c, err := dial(ctx, "tcp", pu.Host)
	if err != nil {
		var e *clierr.Error
		if errors.As(err, &e) || isTimeout(err) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, &clierr.Error{Kind: clierr.KindNetwork, Err: fmt.Errorf("the proxy %s refused the connection: %w", name, err),
				Hints: []string{"is the proxy running there? check --proxy"}}
		}
		return nil, &clierr.Error{Kind: clierr.KindNetwork, Err: fmt.Errorf("connect to the proxy %s: %w", name, err)}
	}
	// The exchange with the proxy is bounded by ctx: by its deadline, and
	// by its cancellation (Ctrl-C) through an expired deadline.
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if pu.User != nil {
		pw, _ := pu.User.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(pu.User.Username()+":"+pw)))
	}
	req.Header.Set("User-Agent", "mqtk")
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, proxyIOError(ctx, name, err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		c.Close()
		return nil, proxyIOError(ctx, name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		e := &clierr.Error{Kind: clierr.KindNetwork, Err: fmt.Errorf("the proxy %s refused to connect to %s: HTTP %s", name, addr, resp.Status)}
		switch {
		case resp.StatusCode == http.StatusProxyAuthRequired && pu.User == nil:
			e.Err = fmt.Errorf("the proxy %s wants a login (HTTP %s)", name, resp.Status)
			e.Hints = []string{"give it in the URL: --proxy http://user:pass@host:port"}
		case resp.StatusCode == http.StatusProxyAuthRequired:
			e.Err = fmt.Errorf("the proxy %s refused the user name or password (HTTP %s)", name, resp.Status)
			e.Hints = []string{"check the user:pass@ part of --proxy"}
		case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusMethodNotAllowed:
			e.Hints = []string{"the proxy does not allow CONNECT to this port: many HTTP proxies allow it to 443 only"}
		}
		return nil, e
	}
	if !stop() {
		// ctx ended during the exchange: the deadline is already spent.
		c.Close()
		return nil, ctx.Err()
	}
	_ = c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// Bytes the proxy sent after its answer belong to the broker.
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

func proxyIOError(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if isTimeout(err) {
		return err
	}
	return &clierr.Error{Kind: clierr.KindNetwork, Err: fmt.Errorf("the proxy %s did not answer CONNECT as an HTTP proxy: %w", name, err),
		Hints: []string{"check that --proxy names an HTTP proxy (for a SOCKS proxy write socks5h://)"}}
}

// bufferedConn is a connection whose first bytes were read ahead.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
