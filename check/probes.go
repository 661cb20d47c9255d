package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/packet"
)

// prober runs the probes against one broker and collects their rows.
// It is used by one goroutine.
type prober struct {
	cfg        mqttconn.Config
	dial       func(context.Context, mqttconn.Config) (net.Conn, error)
	v          packet.Version // version of the behaviour probes
	prefix     string
	maxPayload int

	// wait bounds one exchange with the broker (an acknowledgement, a
	// delivery that should come); quiet is how long to listen before
	// concluding that nothing more comes. quiet grows with the measured
	// round trip, so a distant broker is not misjudged.
	wait, quiet time.Duration

	idBase string
	ids    int

	connack *packet.Properties // the MQTT 5 CONNACK's, nil before or without MQTT 5
	rows    []Row
	timings []Row
}

func newProber(o *Options, cfg mqttconn.Config, prefix string, v mqttconn.Version) *prober {
	dial := o.DialConn
	if dial == nil {
		dial = mqttconn.DialConn
	}
	pv := packet.Version(v)
	if v != mqttconn.V31 && v != mqttconn.V311 {
		pv = packet.V5
	}
	return &prober{
		cfg: cfg, dial: dial, v: pv, prefix: prefix, maxPayload: o.MaxPayload,
		wait: 5 * time.Second, quiet: 300 * time.Millisecond,
		// Short enough for MQTT 3.1's 23-byte client id limit.
		idBase: "mqtkck-" + randomHex(3),
	}
}

func (p *prober) run(ctx context.Context) {
	probes := []struct {
		name string
		fn   func(context.Context) error
		ids  []string
	}{
		{"protocol versions", p.probeVersions, []string{"protocol.3.1", "protocol.3.1.1", "protocol.5"}},
		{"CONNACK", p.probeConnack, nil},
		{"timings", p.probeTimings, nil},
		{"retained messages", p.probeRetained, []string{"retained"}},
		{"wildcards", p.probeWildcards, []string{"wildcards"}},
		{"largest payload", p.probeMaxPayload, []string{"max_payload"}},
		{"receive maximum", p.probeReceiveMaximum, []string{"receive_maximum_enforced"}},
		{"broker's receive maximum", p.probeBrokerReceiveMaximum, []string{"receive_maximum_disconnect"}},
		{"in-flight window", p.probeInflightWindow, []string{"inflight_window"}},
		{"shared subscriptions", p.probeShared, []string{"shared_subscriptions"}},
		{"subscription identifiers", p.probeSubscriptionID, []string{"subscription_identifiers"}},
		{"no local", p.probeNoLocal, []string{"no_local"}},
		{"retain handling", p.probeRetainHandling, []string{"retain_handling"}},
		{"will", p.probeWill, []string{"will"}},
		{"will delay", p.probeWillDelay, []string{"will_delay"}},
		{"session", p.probeSession, []string{"session_resumption", "message_expiry"}},
		{"topic aliases", p.probeTopicAliases, []string{"topic_alias_to_broker", "topic_alias_from_broker"}},
		{"$SYS", p.probeSys, []string{"sys"}},
		{"TLS", p.probeTLS, nil},
	}
	for _, pr := range probes {
		before := len(p.rows)
		var err error
		if ctx.Err() != nil {
			err = ctx.Err()
		} else {
			err = pr.fn(ctx)
		}
		if err == nil {
			continue
		}
		// The probe failed as a whole: each row it did not make says why.
		verdict := Failed
		if ctx.Err() != nil {
			verdict = Skipped
		}
		for _, id := range pr.ids {
			if slices.ContainsFunc(p.rows[before:], func(r Row) bool { return r.ID == id }) {
				continue
			}
			p.rows = append(p.rows, Row{ID: id, Group: groupOf(id), Name: nameOf(id), Verdict: verdict, Note: errorNote(err)})
		}
		if len(pr.ids) == 0 && len(p.rows) == before {
			p.rows = append(p.rows, Row{ID: strings.ToLower(strings.ReplaceAll(pr.name, " ", "_")), Group: "probe", Name: pr.name, Verdict: verdict, Note: errorNote(err)})
		}
	}
	p.rows = append(p.rows, p.timings...)
}

// The names of rows whose probe may fail before making them.
var rowNames = map[string]string{
	"protocol.3.1":               "MQTT 3.1",
	"protocol.3.1.1":             "MQTT 3.1.1",
	"protocol.5":                 "MQTT 5",
	"retained":                   "retained messages",
	"wildcards":                  "wildcard subscriptions",
	"max_payload":                "largest payload accepted",
	"receive_maximum_enforced":   "honours the client's Receive Maximum",
	"receive_maximum_disconnect": "disconnects past its Receive Maximum",
	"inflight_window":            "in-flight window towards the client",
	"shared_subscriptions":       "shared subscriptions",
	"subscription_identifiers":   "subscription identifiers",
	"no_local":                   "no local",
	"retain_handling":            "retain handling",
	"will":                       "will message",
	"will_delay":                 "will delay",
	"session_resumption":         "session resumption (queued QoS 1, 2)",
	"message_expiry":             "message expiry",
	"topic_alias_to_broker":      "topic aliases, client to broker",
	"topic_alias_from_broker":    "topic aliases, broker to client",
	"sys":                        "$SYS topics",
}

func nameOf(id string) string {
	if n, ok := rowNames[id]; ok {
		return n
	}
	return id
}

func groupOf(id string) string {
	if g, _, ok := strings.Cut(id, "."); ok {
		return g
	}
	return "behaviour"
}

func (p *prober) add(r Row) {
	if r.Group == "" {
		r.Group = groupOf(r.ID)
	}
	if r.Name == "" {
		r.Name = nameOf(r.ID)
	}
	p.rows = append(p.rows, r)
}

func num(f float64) *float64 { return &f }

func (p *prober) topic(name string) string { return p.prefix + "/" + name }

func (p *prober) newID() string {
	p.ids++
	return fmt.Sprintf("%s-%d", p.idBase, p.ids)
}

// open connects a new client at the probes' version with a clean session
// that ends with the connection; edit may change the CONNECT.
func (p *prober) open(ctx context.Context, edit func(*packet.Connect)) (*rawConn, *packet.Connack, error) {
	cp := &packet.Connect{ClientID: p.newID(), CleanStart: true, KeepAlive: 60}
	if edit != nil {
		edit(cp)
	}
	res, err := p.connect(ctx, p.v, cp)
	if err != nil {
		return nil, nil, err
	}
	if res.conn == nil {
		if res.closed {
			return nil, nil, errors.New("the broker closed the connection instead of answering CONNECT")
		}
		return nil, res.connack, fmt.Errorf("the broker refused CONNECT: %s", p.reason(res.connack.Code))
	}
	return res.conn, res.connack, nil
}

// reason names a reason code at the probes' version.
func (p *prober) reason(c packet.ReasonCode) string {
	if p.v != packet.V5 {
		return fmt.Sprintf("%s (%d)", packet.ConnackName311(c), byte(c))
	}
	return fmt.Sprintf("%s (0x%02X)", c, byte(c))
}

// needs5 adds rows that need MQTT 5 when the probes speak 3.1.1, and
// reports whether it did.
func (p *prober) needs5(ids ...string) bool {
	if p.v == packet.V5 {
		return false
	}
	for _, id := range ids {
		p.add(Row{ID: id, Verdict: NA, Note: "needs MQTT 5 (the probes spoke " + p.v.String() + ")"})
	}
	return true
}

const markerPayload = "mqtk-check-marker"

// beforeMarker publishes a marker on topic from c (which must be
// subscribed to it) and returns the messages on topic that came before
// the marker. A broker delivers one publisher's messages on one topic in
// order [MQTT-4.6.0-6], so anything routed to c before the marker has
// arrived by then: this tells "nothing came" without guessing a wait.
func (p *prober) beforeMarker(ctx context.Context, c *rawConn, topic string) ([]*packet.Publish, error) {
	if _, err := c.publish(ctx, p.wait, &packet.Publish{Topic: topic, QoS: 1, Payload: []byte(markerPayload)}); err != nil {
		return nil, fmt.Errorf("publish a marker: %w", err)
	}
	var got []*packet.Publish
	for {
		m, err := c.message(ctx, p.wait, topic)
		if err != nil {
			return got, fmt.Errorf("wait for the marker: %w", err)
		}
		if string(m.Payload) == markerPayload && !m.Retain {
			return got, nil
		}
		got = append(got, m)
	}
}

// clearRetained removes the retained message on topic, on a connection
// of its own: cleaning up must not depend on the state of the probe's.
func (p *prober) clearRetained(ctx context.Context, topic string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.wait)
	defer cancel()
	c, _, err := p.open(ctx, nil)
	if err != nil {
		return
	}
	defer c.disconnect(nil)
	// [MQTT-3.3.1-6] an empty retained message removes the retained one.
	_, _ = c.publish(ctx, p.wait, &packet.Publish{Topic: topic, QoS: 1, Retain: true})
}

// rowOf returns a row an earlier probe made, or nil: some probes need
// what another found (retain handling needs retained messages).
func (p *prober) rowOf(id string) *Row {
	for i := range p.rows {
		if p.rows[i].ID == id {
			return &p.rows[i]
		}
	}
	return nil
}

// endSession connects as id with a clean session that ends with the
// connection, so that no session of the check's is left behind.
func (p *prober) endSession(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.wait)
	defer cancel()
	res, err := p.connect(ctx, p.v, &packet.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	if err == nil && res.conn != nil {
		res.conn.disconnect(nil)
	}
}
