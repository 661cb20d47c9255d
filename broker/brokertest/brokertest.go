// Package brokertest runs a broker for a client test: mqtk's own broker in
// the test's process, or Debian's mosquitto (internal/mosquittotest),
// behind one type, so that pub, sub and the connection layer test their
// behaviour against both, and without Debian's mosquitto installed still
// against mqtk's (DESIGN.md, test tier 2).
//
// Options are mosquittotest's: listeners (TLS, WebSockets, unix), a
// password file, an ACL file, persistence, and mosquitto configuration
// lines. For mqtk's broker the configuration lines it has an equivalent
// for are translated (Directives); a test that needs one it has not skips
// the mqtk half and says which.
package brokertest

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// The names of the two brokers, as subtests are named.
const (
	Mqtk      = "mqtk"
	Mosquitto = "mosquitto"
)

// Names lists both brokers, mqtk's first.
func Names() []string { return []string{Mqtk, Mosquitto} }

// Broker is a running broker of either kind.
type Broker struct {
	Name   string
	Ports  []int    // one per listener; 0 for unix listeners
	Socket []string // unix socket paths, one per listener ("" for network ones)

	t    testing.TB
	mosq *mosquittotest.Broker
	own  []*ownBroker
}

// ownBroker is one in-process mqtk broker. mqtk's TLS settings are the
// broker's, not a listener's, so listeners with different certificates
// get a broker each (see group).
type ownBroker struct {
	opts   broker.Options
	at     []int // indexes into Broker.Ports of its listeners
	b      *broker.Broker
	closed bool
}

// Each runs f as a subtest against each broker, started with o. The
// mosquitto half skips when Debian's mosquitto is not installed.
func Each(t *testing.T, o mosquittotest.Options, f func(t *testing.T, b *Broker)) {
	t.Helper()
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) { f(t, Start(t, name, o)) })
	}
}

// Start starts the broker called name (Mqtk or Mosquitto) with o, and
// stops it when the test ends.
func Start(t testing.TB, name string, o mosquittotest.Options) *Broker {
	t.Helper()
	switch name {
	case Mosquitto:
		m := mosquittotest.Start(t, o)
		return &Broker{Name: name, Ports: m.Ports, Socket: m.Socket, t: t, mosq: m}
	case Mqtk:
		return startOwn(t, o)
	}
	t.Fatalf("brokertest: unknown broker %q", name)
	return nil
}

// IsMosquitto reports whether b is Debian's mosquitto, for the few
// checks where the two brokers may rightly differ.
func (b *Broker) IsMosquitto() bool { return b.mosq != nil }

// Port returns the first listener's port.
func (b *Broker) Port() int { return b.Ports[0] }

// Addr returns "127.0.0.1:PORT" of listener i.
func (b *Broker) Addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", b.Ports[i]) }

// Stop ends the broker cleanly (mosquitto: SIGTERM; mqtk: Close, which
// tells MQTT 5 clients with DISCONNECT 0x8B) and keeps its state on disk
// when persistence is on.
func (b *Broker) Stop() {
	if b.mosq != nil {
		b.mosq.Stop()
		return
	}
	for _, ob := range b.own {
		ob.close(b.t)
	}
}

// Kill ends the broker at once. mosquitto gets SIGKILL, as in a crash;
// mqtk's broker runs in the test's process and cannot crash on its own,
// so it is closed as by Stop.
func (b *Broker) Kill() {
	if b.mosq != nil {
		b.mosq.Kill()
		return
	}
	b.Stop()
}

// Restart starts the broker again on the same ports, with the same state
// directory (after Stop or Kill, or while running: it stops first).
func (b *Broker) Restart() {
	b.t.Helper()
	if b.mosq != nil {
		b.mosq.Restart()
		return
	}
	b.Stop()
	for _, ob := range b.own {
		for i, at := range ob.at {
			if b.Ports[at] != 0 {
				ob.opts.Listeners[i] = withPort(ob.opts.Listeners[i], b.Ports[at])
			}
		}
		ob.start(b.t, b)
	}
}

func startOwn(t testing.TB, o mosquittotest.Options) *Broker {
	t.Helper()
	if len(o.Listeners) == 0 {
		o.Listeners = []mosquittotest.Listener{{}}
	}
	dir := t.TempDir()
	b := &Broker{Name: Mqtk, t: t, Ports: make([]int, len(o.Listeners)), Socket: make([]string, len(o.Listeners))}
	limits, err := Directives(o.Global)
	if err != nil {
		t.Skipf("mqtk half: %v", err)
	}
	for gi, g := range group(o.Listeners) {
		opts := broker.Options{
			AllowAnonymous: o.PasswordFile == "",
			PasswordFile:   o.PasswordFile,
			ACLFile:        o.ACLFile,
			Limits:         limits,
		}
		if o.Persistence {
			opts.DataDir = filepath.Join(dir, fmt.Sprintf("data%d", gi))
		}
		for _, i := range g {
			if tl := o.Listeners[i].TLS; tl != nil {
				opts.TLSCert, opts.TLSKey = tl.CertFile, tl.KeyFile
				if tl.RequireCertificate {
					opts.TLSCA, opts.RequireClientCert, opts.CertAsUsername = tl.CAFile, true, tl.UseIdentityAsUsername
				}
				break // one set of TLS settings per group
			}
		}
		ob := &ownBroker{at: g}
		for _, i := range g {
			l := o.Listeners[i]
			extra, err := Directives(l.Extra)
			if err != nil {
				t.Skipf("mqtk half: listener %d: %v", i, err)
			}
			merge(&opts.Limits, extra)
			var spec string
			switch {
			case l.Unix:
				// Unix socket paths are limited to about 100 bytes.
				b.Socket[i] = filepath.Join(dir, fmt.Sprintf("s%d", i))
				spec = "unix://" + b.Socket[i]
			case l.WebSockets && l.TLS != nil:
				spec = "wss://127.0.0.1:0/mqtt"
			case l.WebSockets:
				spec = "ws://127.0.0.1:0/mqtt"
			case l.TLS != nil:
				spec = "tls://127.0.0.1:0"
			default:
				spec = "tcp://127.0.0.1:0"
			}
			opts.Listeners = append(opts.Listeners, spec)
		}
		ob.opts = opts
		ob.start(t, b)
		b.own = append(b.own, ob)
	}
	t.Cleanup(b.Stop)
	return b
}

// group puts the listeners on as few mqtk brokers as their TLS settings
// allow: those without TLS and those with the first TLS settings on the
// first broker, each other set of TLS settings on a broker of its own.
// Messages cross listeners only within one broker, as the tests that
// publish on one listener and read on another need.
func group(ls []mosquittotest.Listener) [][]int {
	var groups [][]int
	var keys []mosquittotest.TLS
	for i, l := range ls {
		if l.TLS == nil {
			continue
		}
		k := *l.TLS
		found := false
		for gi, key := range keys {
			if key == k {
				groups[gi] = append(groups[gi], i)
				found = true
				break
			}
		}
		if !found {
			keys = append(keys, k)
			groups = append(groups, []int{i})
		}
	}
	var plain []int
	for i, l := range ls {
		if l.TLS == nil {
			plain = append(plain, i)
		}
	}
	if len(groups) == 0 {
		return [][]int{plain}
	}
	// Keep the listeners' order within the first broker, so that Ports
	// line up with what broker.Listeners reports.
	first := append(plain, groups[0]...)
	slices.Sort(first)
	groups[0] = first
	return groups
}

// Own starts mqtk's broker with o in the test's process and closes it
// when the test ends, for a test that needs options of mqtk's own (limits,
// say) rather than mosquitto's.
func Own(t testing.TB, o broker.Options) *broker.Broker {
	t.Helper()
	b, err := broker.New(o)
	if err != nil {
		t.Fatalf("mqtk broker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("mqtk broker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = b.Close(ctx) // idempotent: Stop may have closed it
	})
	return b
}

func (ob *ownBroker) start(t testing.TB, b *Broker) {
	t.Helper()
	nb := Own(t, ob.opts)
	ob.b, ob.closed = nb, false
	for i, l := range nb.Listeners() {
		if l.Scheme == "unix" {
			continue
		}
		_, port, err := splitPort(l.Addr)
		if err != nil {
			t.Fatalf("mqtk broker listener %s: %v", l.Addr, err)
		}
		b.Ports[ob.at[i]] = port
	}
}

func (ob *ownBroker) close(t testing.TB) {
	if ob.closed || ob.b == nil {
		return
	}
	ob.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := ob.b.Close(ctx); err != nil {
		t.Errorf("close mqtk broker: %v", err)
	}
}

func splitPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("no port in %q", addr)
	}
	p, err := strconv.Atoi(addr[i+1:])
	return addr[:i], p, err
}

// withPort puts port into a listener URL that has port 0.
func withPort(spec string, port int) string {
	return strings.Replace(spec, "127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", port), 1)
}

// Directives translates mosquitto configuration lines into mqtk broker
// limits. Lines mqtk's broker has no equivalent for are an error, which
// Start turns into a skip of the mqtk half that names the line. Lines
// that describe what mqtk's broker does anyway are accepted.
func Directives(conf string) (broker.Limits, error) {
	var l broker.Limits
	for line := range strings.SplitSeq(conf, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		n := -1
		if len(f) == 2 {
			if v, err := strconv.Atoi(f[1]); err == nil {
				n = v
			}
		}
		switch {
		case f[0] == "max_packet_size" && n > 0:
			l.MaxPacketSize = uint32(n)
		case f[0] == "max_topic_alias" && n > 0 && n <= 65535:
			l.TopicAliasMaximum = uint16(n)
		case f[0] == "max_keepalive" && n > 0 && n <= 65535:
			l.MaxKeepalive = uint16(n)
		case f[0] == "max_queued_messages" && n >= 0 && n <= 65535:
			// mqtk bounds what a session holds, in flight and queued
			// together, by MaxInflight; mosquitto's 0 is "no limit",
			// here the largest bound there is. (mosquitto's
			// max_inflight_messages, the window alone, has no mqtk
			// setting: the engine's window for 3.1.1 clients is fixed.)
			l.MaxInflight = uint16(cmp.Or(n, 65535))
		default:
			return broker.Limits{}, fmt.Errorf("mosquitto directive %q has no mqtk broker equivalent", line)
		}
	}
	return l, nil
}

// merge copies the non-zero fields of from into to.
func merge(to *broker.Limits, from broker.Limits) {
	if from.MaxPacketSize != 0 {
		to.MaxPacketSize = from.MaxPacketSize
	}
	if from.TopicAliasMaximum != 0 {
		to.TopicAliasMaximum = from.TopicAliasMaximum
	}
	if from.MaxKeepalive != 0 {
		to.MaxKeepalive = from.MaxKeepalive
	}
	if from.MaxInflight != 0 {
		to.MaxInflight = from.MaxInflight
	}
}
