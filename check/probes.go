package check

import (
	"bytes"
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
	dial       func(context.Context, *mqttconn.Config) (net.Conn, error)
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
		dial = dialRaw
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
	"protocol.3.1":             "MQTT 3.1",
	"protocol.3.1.1":           "MQTT 3.1.1",
	"protocol.5":               "MQTT 5",
	"retained":                 "retained messages",
	"wildcards":                "wildcard subscriptions",
	"max_payload":              "largest payload accepted",
	"receive_maximum_enforced": "honours the client's Receive Maximum",
	"inflight_window":          "in-flight window towards the client",
	"shared_subscriptions":     "shared subscriptions",
	"subscription_identifiers": "subscription identifiers",
	"no_local":                 "no local",
	"retain_handling":          "retain handling",
	"will":                     "will message",
	"will_delay":               "will delay",
	"session_resumption":       "session resumption (queued QoS 1, 2)",
	"message_expiry":           "message expiry",
	"topic_alias_to_broker":    "topic aliases, client to broker",
	"topic_alias_from_broker":  "topic aliases, broker to client",
	"sys":                      "$SYS topics",
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

// --- protocol versions and CONNACK ---

func (p *prober) probeVersions(ctx context.Context) error {
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		id := "protocol." + v.String()
		res, err := p.connect(ctx, v, &packet.Connect{ClientID: p.newID(), CleanStart: true, KeepAlive: 60})
		switch {
		case err != nil:
			p.add(Row{ID: id, Verdict: Failed, Note: errorNote(err)})
		case res.closed:
			p.add(Row{ID: id, Verdict: No, Value: "closed the connection"})
		case res.conn != nil:
			res.conn.disconnect(nil)
			p.add(Row{ID: id, Verdict: Yes, Value: "accepted"})
		default:
			code := res.connack.Code
			name := packet.ConnackName311(code)
			if v == packet.V5 && res.connack.Properties.Has(packet.PropReasonString) || v == packet.V5 && code >= 0x80 {
				name = code.String()
			}
			p.add(Row{ID: id, Verdict: No, Value: fmt.Sprintf("refused: %s (0x%02X)", name, byte(code))})
		}
	}
	return nil
}

func (p *prober) probeConnack(ctx context.Context) error {
	if p.v != packet.V5 {
		p.add(Row{ID: "connack.properties", Group: "connack", Name: "CONNACK properties", Verdict: NA, Note: "MQTT 5 only (the probes spoke " + p.v.String() + ")"})
		return nil
	}
	// An empty client id asks the broker to assign one [MQTT-3.1.3-6].
	res, err := p.connect(ctx, packet.V5, &packet.Connect{CleanStart: true, KeepAlive: 60})
	if err != nil {
		return err
	}
	assigned := Row{ID: "connack.assigned_client_id", Name: "Assigned Client Identifier"}
	if res.conn == nil {
		code := packet.ReasonCode(0)
		if res.connack != nil {
			code = res.connack.Code
		}
		assigned.Verdict, assigned.Value = No, fmt.Sprintf("refuses an empty client id: %s", p.reason(code))
		if res, err = p.connect(ctx, packet.V5, &packet.Connect{ClientID: p.newID(), CleanStart: true, KeepAlive: 60}); err != nil {
			return err
		}
		if res.conn == nil {
			return errors.New("the broker refused an MQTT 5 CONNECT it had accepted before")
		}
	} else {
		assigned.Verdict, assigned.Value, assigned.Volatile = Yes, res.connack.Properties.AssignedClientID, true
		if assigned.Value == "" {
			assigned.Verdict, assigned.Volatile = No, false
			assigned.Value = "accepted an empty id without saying which it assigned"
		}
	}
	res.conn.disconnect(nil)
	props := res.connack.Properties
	p.connack = &props
	number := func(id, name string, pid packet.PropID, v uint32, def uint32, unit, absent string) {
		r := Row{ID: id, Name: name, Verdict: Info}
		if props.Has(pid) {
			r.Value, r.Number = fmt.Sprint(v)+unit, num(float64(v))
		} else {
			r.Value, r.Number = absent, num(float64(def))
		}
		p.add(r)
	}
	flag := func(id, name string, pid packet.PropID, v byte) {
		r := Row{ID: id, Name: name, Verdict: Yes, Value: "not sent (yes by default)"}
		if props.Has(pid) {
			r.Value = "advertised"
			if v == 0 {
				r.Verdict, r.Value = No, "advertised as not available"
			}
		}
		p.add(r)
	}
	number("connack.receive_maximum", "Receive Maximum", packet.PropReceiveMaximum, uint32(props.ReceiveMaximum), 65535, "", "65535 (not sent: the default)")
	number("connack.maximum_qos", "Maximum QoS", packet.PropMaximumQoS, uint32(props.MaximumQoS), 2, "", "2 (not sent: the default)")
	flag("connack.retain_available", "Retain Available", packet.PropRetainAvailable, props.RetainAvailable)
	number("connack.maximum_packet_size", "Maximum Packet Size", packet.PropMaximumPacketSize, props.MaximumPacketSize, 0, " bytes", "no limit announced")
	number("connack.topic_alias_maximum", "Topic Alias Maximum", packet.PropTopicAliasMaximum, uint32(props.TopicAliasMaximum), 0, "", "0 (not sent: the default)")
	flag("connack.wildcard_subscription_available", "Wildcard Subscription Available", packet.PropWildcardSubAvailable, props.WildcardSubAvailable)
	flag("connack.shared_subscription_available", "Shared Subscription Available", packet.PropSharedSubAvailable, props.SharedSubAvailable)
	flag("connack.subscription_identifiers_available", "Subscription Identifiers Available", packet.PropSubIDAvailable, props.SubIDAvailable)
	number("connack.server_keep_alive", "Server Keep Alive", packet.PropServerKeepAlive, uint32(props.ServerKeepAlive), 60, " s", "not sent (keeps the client's 60 s)")
	p.add(assigned)
	return nil
}

// --- timings ---

func (p *prober) probeTimings(ctx context.Context) error {
	const rounds = 5
	var conn, sub, rtt []time.Duration
	for range rounds {
		res, err := p.connect(ctx, p.v, &packet.Connect{ClientID: p.newID(), CleanStart: true, KeepAlive: 60})
		if err != nil {
			return err
		}
		if res.conn == nil {
			return errors.New("the broker refused CONNECT")
		}
		conn = append(conn, res.elapsed)
		c := res.conn
		t := p.topic("timing")
		start := time.Now()
		a, err := c.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1})
		if err != nil {
			c.drop()
			return err
		}
		sub = append(sub, time.Since(start))
		if !granted(a) {
			c.drop()
			return fmt.Errorf("the broker refused a subscription to %s", t)
		}
		start = time.Now()
		if _, err := c.publish(ctx, p.wait, &packet.Publish{Topic: t, Payload: []byte("ping")}); err != nil {
			c.drop()
			return err
		}
		if _, err := c.message(ctx, p.wait, t); err != nil {
			c.drop()
			return fmt.Errorf("own message on %s: %w", t, err)
		}
		rtt = append(rtt, time.Since(start))
		c.disconnect(nil)
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	// Listening for "nothing more" must outlast a round trip by far.
	p.quiet = max(p.quiet, 10*median(rtt))
	for _, t := range []struct {
		id, name string
		d        []time.Duration
	}{
		{"timing.connect", "CONNECT → CONNACK (with dial)", conn},
		{"timing.subscribe", "SUBSCRIBE → SUBACK", sub},
		{"timing.round_trip", "publish → own delivery", rtt},
	} {
		m := median(t.d)
		p.timings = append(p.timings, Row{ID: t.id, Group: "timing", Name: t.name, Verdict: Info,
			Value:  fmt.Sprintf("%s (median of %d)", fmtDuration(m), rounds),
			Number: num(float64(m.Microseconds()) / 1000), Volatile: true})
	}
	return nil
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// --- retained messages and wildcards ---

func (p *prober) probeRetained(ctx context.Context) error {
	t := p.topic("retained")
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer p.clearRetained(ctx, t)
	code, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Retain: true, Payload: []byte("retained")})
	switch {
	case err != nil && (errors.Is(err, errClosed) || isClosed(err)):
		p.add(Row{ID: "retained", Verdict: No, Value: "the broker closed the connection on a retained PUBLISH"})
		return nil
	case err != nil:
		pub.drop()
		return err
	case code >= 0x80:
		pub.disconnect(nil)
		p.add(Row{ID: "retained", Verdict: No, Value: "refused: " + p.reason(code)})
		return nil
	}
	pub.disconnect(nil)
	sub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer sub.disconnect(nil)
	if _, err := sub.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1}); err != nil {
		return err
	}
	got, err := p.beforeMarker(ctx, sub, t)
	if err != nil {
		return err
	}
	if len(got) == 0 || !got[0].Retain || string(got[0].Payload) != "retained" {
		p.add(Row{ID: "retained", Verdict: No, Value: "accepted, but not sent to a new subscriber"})
		return nil
	}
	p.add(Row{ID: "retained", Verdict: Yes, Value: "kept and sent to new subscribers"})
	return nil
}

func (p *prober) probeWildcards(ctx context.Context) error {
	sub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer sub.disconnect(nil)
	plus, hash := p.topic("wild/+/c"), p.topic("wild2/#")
	a, err := sub.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: plus, QoS: 1}, packet.Subscription{Filter: hash, QoS: 1})
	if err != nil {
		return err
	}
	var refused []string
	for i, f := range []string{"+", "#"} {
		if i < len(a.Codes) && a.Codes[i] >= 0x80 {
			refused = append(refused, fmt.Sprintf("%s: %s", f, p.reason(a.Codes[i])))
		}
	}
	if len(refused) > 0 {
		p.add(Row{ID: "wildcards", Verdict: No, Value: "refused " + strings.Join(refused, ", ")})
		return nil
	}
	var missed []string
	for _, c := range []struct{ sym, topic string }{{"+", p.topic("wild/x/c")}, {"#", p.topic("wild2/y/z")}} {
		if _, err := sub.publish(ctx, p.wait, &packet.Publish{Topic: c.topic, QoS: 1, Payload: []byte("w")}); err != nil {
			return err
		}
		if _, err := sub.message(ctx, p.wait, c.topic); err != nil {
			missed = append(missed, c.sym)
		}
	}
	if len(missed) > 0 {
		p.add(Row{ID: "wildcards", Verdict: No, Value: "granted, but nothing delivered through " + strings.Join(missed, " and ")})
		return nil
	}
	p.add(Row{ID: "wildcards", Verdict: Yes, Value: "+ and # match"})
	return nil
}

// --- largest payload ---

// probeMaxPayload searches for the largest payload the broker accepts
// and delivers, up to the --max-payload bound: a bisection of QoS 1
// publishes, each judged by whether the subscriber receives it before a
// marker sent after it.
func (p *prober) probeMaxPayload(ctx context.Context) error {
	t := p.topic("size")
	sub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { sub.disconnect(nil) }()
	if _, err := sub.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1}); err != nil {
		return err
	}
	var pub *rawConn
	defer func() {
		if pub != nil {
			pub.disconnect(nil)
		}
	}()
	try := func(n int) (bool, error) {
		if pub == nil {
			if pub, _, err = p.open(ctx, nil); err != nil {
				return false, err
			}
		}
		code, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: bytes.Repeat([]byte{'x'}, n)})
		if err != nil || code >= 0x80 {
			// A broker may close the connection for a packet over its
			// limit: the next try opens a new one.
			pub.drop()
			pub = nil
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
		}
		if sub == nil || ctx.Err() != nil {
			return false, ctx.Err()
		}
		got, err := p.beforeMarker(ctx, sub, t)
		if err != nil {
			return false, err
		}
		for _, m := range got {
			if len(m.Payload) == n {
				return true, nil
			}
		}
		return false, nil
	}
	ok, err := try(p.maxPayload)
	if err != nil {
		return err
	}
	overhead := func(n int) int {
		pk := &packet.Publish{Topic: t, QoS: 1, PacketID: 1, Payload: make([]byte, n)}
		return pk.Size(p.v) - n
	}
	if ok {
		p.add(Row{ID: "max_payload", Verdict: Info, Number: num(float64(p.maxPayload)),
			Value: fmt.Sprintf("≥ %d bytes (the --max-payload bound; larger not tried)", p.maxPayload)})
		return nil
	}
	lo, hi := 0, p.maxPayload // lo accepted (assumed for 0), hi refused
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := try(mid)
		if err != nil {
			return err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	p.add(Row{ID: "max_payload", Verdict: Info, Number: num(float64(lo)),
		Value: fmt.Sprintf("%d bytes (a %d-byte PUBLISH at QoS 1 with a %d-byte topic)", lo, lo+overhead(lo), len(t)),
		Note:  fmt.Sprintf("%d bytes were refused", lo+1)})
	return nil
}

// --- flow control ---

// probeReceiveMaximum subscribes with a Receive Maximum of 2, does not
// acknowledge, and counts what the broker sends: it may have at most 2
// QoS 1 messages unacknowledged towards the client [MQTT-3.3.4-9].
func (p *prober) probeReceiveMaximum(ctx context.Context) error {
	if p.needs5("receive_maximum_enforced") {
		return nil
	}
	const limit, sent = 2, 6
	t := p.topic("rm")
	sub, _, err := p.open(ctx, func(c *packet.Connect) {
		c.Properties.ReceiveMaximum = limit
	})
	if err != nil {
		return err
	}
	defer sub.disconnect(nil)
	sub.autoAck.Store(false)
	if _, err := sub.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1}); err != nil {
		return err
	}
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer pub.disconnect(nil)
	for i := range sent {
		if _, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte{byte('0' + i)}}); err != nil {
			return err
		}
	}
	var held []*packet.Publish
	for {
		m, err := sub.message(ctx, p.quiet, t)
		if errors.Is(err, errQuiet) {
			break
		}
		if err != nil {
			return err
		}
		held = append(held, m)
	}
	unacked := len(held)
	total := unacked
	for _, m := range held {
		sub.ack(m)
	}
	for total < sent {
		m, err := sub.message(ctx, p.wait, t)
		if err != nil {
			break
		}
		sub.ack(m)
		total++
	}
	r := Row{ID: "receive_maximum_enforced", Number: num(float64(unacked))}
	switch {
	case unacked > limit:
		r.Verdict, r.Value = No, fmt.Sprintf("sent %d unacknowledged QoS 1 messages to a client whose Receive Maximum is %d", unacked, limit)
	case unacked == 0:
		r.Verdict, r.Value = No, "sent nothing"
	default:
		r.Verdict, r.Value = Yes, fmt.Sprintf("stopped at %d unacknowledged, the client's limit", unacked)
	}
	if total < sent && r.Verdict == Yes {
		r.Verdict, r.Note = No, fmt.Sprintf("only %d of %d messages came once acknowledged", total, sent)
	}
	p.add(r)
	return nil
}

// probeInflightWindow measures how many QoS 1 messages the broker has
// unacknowledged towards a client that sets no limit of its own (MQTT 5
// without Receive Maximum means 65,535; 3.1.1 has no way to say): the
// broker's own in-flight limit (mosquitto's max_inflight_messages).
func (p *prober) probeInflightWindow(ctx context.Context) error {
	const sent = 30
	t := p.topic("window")
	sub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer sub.disconnect(nil)
	sub.autoAck.Store(false)
	if _, err := sub.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1}); err != nil {
		return err
	}
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer pub.disconnect(nil)
	for i := range sent {
		if _, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte{byte(i)}}); err != nil {
			return err
		}
	}
	n := 0
	for {
		m, err := sub.message(ctx, p.quiet, t)
		if errors.Is(err, errQuiet) {
			break
		}
		if err != nil {
			return err
		}
		n++
		// Kept unacknowledged: the window is what is out at once.
		_ = m
	}
	r := Row{ID: "inflight_window", Verdict: Info, Number: num(float64(n)),
		Value: fmt.Sprintf("%d QoS 1 messages unacknowledged at once", n)}
	if n >= sent {
		r.Value = fmt.Sprintf("no limit below %d (all sent without waiting)", sent)
	}
	p.add(r)
	return nil
}

// --- shared subscriptions ---

func (p *prober) probeShared(ctx context.Context) error {
	const n = 10
	t := p.topic("shared")
	filter := "$share/mqtkcheck/" + t
	var members []*rawConn
	defer func() {
		for _, m := range members {
			m.disconnect(nil)
		}
	}()
	for range 2 {
		c, _, err := p.open(ctx, nil)
		if err != nil {
			return err
		}
		members = append(members, c)
		a, err := c.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: filter, QoS: 1})
		if err != nil {
			return err
		}
		if !granted(a) {
			p.add(Row{ID: "shared_subscriptions", Verdict: No, Value: "refused: " + p.reason(a.Codes[0])})
			return nil
		}
	}
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer pub.disconnect(nil)
	for i := range n {
		if _, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte{byte('a' + i)}}); err != nil {
			return err
		}
	}
	// Who got which message, in publish order.
	who := map[byte][]int{}
	count := [2]int{}
	deadline := time.Now().Add(p.wait)
	for count[0]+count[1] < n && time.Now().Before(deadline) {
		for i, c := range members {
			m, err := c.message(ctx, 20*time.Millisecond, t)
			if err == nil && len(m.Payload) == 1 {
				who[m.Payload[0]] = append(who[m.Payload[0]], i)
				count[i]++
			} else if err != nil && !errors.Is(err, errQuiet) {
				return err
			}
		}
	}
	total := count[0] + count[1]
	r := Row{ID: "shared_subscriptions"}
	dups := 0
	for _, w := range who {
		dups += len(w) - 1
	}
	switch {
	case dups > 0:
		r.Verdict, r.Value = No, fmt.Sprintf("%d of %d messages went to both members", dups, n)
	case total < n:
		r.Verdict, r.Value = No, fmt.Sprintf("delivered %d of %d messages to the group", total, n)
	default:
		r.Verdict = Yes
		seq := make([]int, 0, n)
		for i := range n {
			seq = append(seq, who[byte('a'+i)][0])
		}
		alternate := true
		for i := 1; i < len(seq); i++ {
			if seq[i] == seq[i-1] {
				alternate = false
			}
		}
		switch {
		case alternate:
			r.Value = fmt.Sprintf("each message to one member, round robin (%d/%d)", count[0], count[1])
		case count[0] == 0 || count[1] == 0:
			r.Value = fmt.Sprintf("each message to one member, all to the same one (%d/%d)", count[0], count[1])
		default:
			r.Value = fmt.Sprintf("each message to one member, spread %d/%d", count[0], count[1])
		}
	}
	p.add(r)
	return nil
}

// --- MQTT 5 subscription options ---

func (p *prober) probeSubscriptionID(ctx context.Context) error {
	if p.needs5("subscription_identifiers") {
		return nil
	}
	t := p.topic("subid")
	c, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer c.disconnect(nil)
	a, err := c.subscribe(ctx, p.wait, 7, packet.Subscription{Filter: t, QoS: 1})
	if errors.Is(err, errClosed) {
		p.add(Row{ID: "subscription_identifiers", Verdict: No, Value: "the broker closed the connection on a SUBSCRIBE with an identifier"})
		return nil
	}
	if err != nil {
		return err
	}
	if !granted(a) {
		p.add(Row{ID: "subscription_identifiers", Verdict: No, Value: "refused: " + p.reason(a.Codes[0])})
		return nil
	}
	if _, err := c.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte("id")}); err != nil {
		return err
	}
	m, err := c.message(ctx, p.wait, t)
	if err != nil {
		return err
	}
	if slices.Equal(m.Properties.SubscriptionIDs, []uint32{7}) {
		p.add(Row{ID: "subscription_identifiers", Verdict: Yes, Value: "sent back with matching messages"})
	} else {
		p.add(Row{ID: "subscription_identifiers", Verdict: No, Value: fmt.Sprintf("a message came with identifiers %v, not [7]", m.Properties.SubscriptionIDs)})
	}
	return nil
}

func (p *prober) probeNoLocal(ctx context.Context) error {
	if p.needs5("no_local") {
		return nil
	}
	t := p.topic("nolocal")
	c, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer c.disconnect(nil)
	if _, err := c.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1, NoLocal: true}); err != nil {
		return err
	}
	other, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer other.disconnect(nil)
	if _, err := c.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte("own")}); err != nil {
		return err
	}
	if _, err := other.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte("other")}); err != nil {
		return err
	}
	m, err := c.message(ctx, p.wait, t)
	if err != nil {
		return err
	}
	if string(m.Payload) == "own" {
		// [MQTT-3.8.3-3] no-local: never one's own messages.
		p.add(Row{ID: "no_local", Verdict: No, Value: "sent the client its own message"})
	} else {
		p.add(Row{ID: "no_local", Verdict: Yes, Value: "own messages not sent back"})
	}
	return nil
}

func (p *prober) probeRetainHandling(ctx context.Context) error {
	if p.needs5("retain_handling") {
		return nil
	}
	if r := p.rowOf("retained"); r == nil || r.Verdict != Yes {
		p.add(Row{ID: "retain_handling", Verdict: NA, Note: "needs retained messages"})
		return nil
	}
	t := p.topic("rh")
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer p.clearRetained(ctx, t)
	_, err = pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Retain: true, Payload: []byte("r")})
	pub.disconnect(nil)
	if err != nil {
		return err
	}
	retained := func(c *rawConn, rh byte) (int, error) {
		if _, err := c.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1, RetainHandling: rh}); err != nil {
			return 0, err
		}
		got, err := p.beforeMarker(ctx, c, t)
		n := 0
		for _, m := range got {
			if m.Retain {
				n++
			}
		}
		return n, err
	}
	c2, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer c2.disconnect(nil)
	n2, err := retained(c2, 2)
	if err != nil {
		return err
	}
	c1, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer c1.disconnect(nil)
	first, err := retained(c1, 1)
	if err != nil {
		return err
	}
	again, err := retained(c1, 1)
	if err != nil {
		return err
	}
	var wrong []string
	if n2 != 0 {
		// [MQTT-3.3.1-11] retain handling 2: no retained messages.
		wrong = append(wrong, "2 (never) sent the retained message")
	}
	if first != 1 {
		wrong = append(wrong, "1 (new subscriptions only) did not send it to a new subscription")
	}
	if again != 0 {
		// [MQTT-3.3.1-10] retain handling 1: only if the subscription is new.
		wrong = append(wrong, "1 sent it again on a repeated subscription")
	}
	if len(wrong) > 0 {
		p.add(Row{ID: "retain_handling", Verdict: No, Value: strings.Join(wrong, "; ")})
	} else {
		p.add(Row{ID: "retain_handling", Verdict: Yes, Value: "0, 1 and 2 honoured"})
	}
	return nil
}

func (p *prober) rowOf(id string) *Row {
	for i := range p.rows {
		if p.rows[i].ID == id {
			return &p.rows[i]
		}
	}
	return nil
}

// --- wills ---

// willRun connects a client with a will on topic, drops it without
// DISCONNECT, and returns how long the will took to come (errQuiet when
// it did not come within wait). edit adjusts the CONNECT.
func (p *prober) willRun(ctx context.Context, topic string, wait time.Duration, edit func(*packet.Connect)) (time.Duration, string, error) {
	watcher, _, err := p.open(ctx, nil)
	if err != nil {
		return 0, "", err
	}
	defer watcher.disconnect(nil)
	if _, err := watcher.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: topic, QoS: 1}); err != nil {
		return 0, "", err
	}
	var id string
	w, _, err := p.open(ctx, func(c *packet.Connect) {
		c.Will = &packet.Will{Topic: topic, Payload: []byte("gone"), QoS: 1}
		if edit != nil {
			edit(c)
		}
		id = c.ClientID
	})
	if err != nil {
		return 0, id, err
	}
	start := time.Now()
	w.drop()
	if _, err := watcher.message(ctx, wait, topic); err != nil {
		return 0, id, err
	}
	return time.Since(start), id, nil
}

func (p *prober) probeWill(ctx context.Context) error {
	_, _, err := p.willRun(ctx, p.topic("will"), p.wait, nil)
	switch {
	case errors.Is(err, errQuiet):
		p.add(Row{ID: "will", Verdict: No, Value: "not published when the client vanished"})
	case err != nil:
		return err
	default:
		p.add(Row{ID: "will", Verdict: Yes, Value: "published when the client vanished"})
	}
	return nil
}

func (p *prober) probeWillDelay(ctx context.Context) error {
	if p.needs5("will_delay") {
		return nil
	}
	const delay = 1 // seconds
	took, id, err := p.willRun(ctx, p.topic("willdelay"), p.wait+delay*time.Second, func(c *packet.Connect) {
		c.Will.Properties.WillDelay = delay
		// A will goes out at the end of its delay or of the session,
		// whichever comes first: the session must outlast the delay.
		// It is ended below.
		c.Properties.SessionExpiry = 30
	})
	if id != "" {
		p.endSession(ctx, id)
	}
	switch {
	case errors.Is(err, errQuiet):
		p.add(Row{ID: "will_delay", Verdict: No, Value: "the delayed will never came"})
	case err != nil:
		return err
	case took < delay*time.Second/2:
		p.add(Row{ID: "will_delay", Verdict: No, Value: fmt.Sprintf("a will delayed %d s was published at once", delay)})
	default:
		p.add(Row{ID: "will_delay", Verdict: Yes, Value: fmt.Sprintf("a will delayed %d s was published after the delay", delay),
			Note: fmt.Sprintf("after %s", fmtDuration(took)), VolatileNote: true})
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

// --- sessions and expiry ---

// probeSession subscribes with a persistent session, goes away, lets a
// QoS 1 and a QoS 2 message (and at MQTT 5 one that expires in a second)
// be published, and comes back.
func (p *prober) probeSession(ctx context.Context) error {
	t := p.topic("session")
	id := p.newID()
	defer p.endSession(ctx, id)
	s, _, err := p.open(ctx, func(c *packet.Connect) {
		c.ClientID = id
		if p.v == packet.V5 {
			c.Properties.SessionExpiry = 60
		} else {
			c.CleanStart = false
		}
	})
	if err != nil {
		return err
	}
	if _, err := s.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 2}); err != nil {
		s.drop()
		return err
	}
	s.disconnect(nil)
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	msgs := []*packet.Publish{{Topic: t, QoS: 1, Payload: []byte("q1")}, {Topic: t, QoS: 2, Payload: []byte("q2")}}
	if p.v == packet.V5 {
		e := &packet.Publish{Topic: t, QoS: 1, Payload: []byte("expires")}
		e.Properties.MessageExpiry = 1
		msgs = append(msgs, e)
	}
	for _, m := range msgs {
		if _, err := pub.publish(ctx, p.wait, m); err != nil {
			pub.drop()
			return err
		}
	}
	pub.disconnect(nil)
	if p.v == packet.V5 {
		// Past the expiry of the third message, with room for a broker
		// that counts in whole seconds.
		select {
		case <-time.After(2100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Back, asking to resume; the session then ends with this connection
	// (MQTT 5: expiry 0), which is the clean-up.
	s, ca, err := p.open(ctx, func(c *packet.Connect) {
		c.ClientID, c.CleanStart = id, false
	})
	if err != nil {
		return err
	}
	defer s.disconnect(nil)
	got, err := p.beforeMarker(ctx, s, t)
	if err != nil {
		return err
	}
	seen := map[string]byte{}
	for _, m := range got {
		seen[string(m.Payload)] = m.QoS
	}
	r := Row{ID: "session_resumption"}
	q1, ok1 := seen["q1"]
	q2, ok2 := seen["q2"]
	switch {
	case !ca.SessionPresent && p.v != packet.V31:
		// MQTT 3.1's CONNACK has no session-present flag: there the
		// queued messages alone tell.
		r.Verdict, r.Value = No, "the session was not kept (session present 0)"
	case !ok1 || !ok2:
		var lost []string
		if !ok1 {
			lost = append(lost, "QoS 1")
		}
		if !ok2 {
			lost = append(lost, "QoS 2")
		}
		r.Verdict, r.Value = No, "session kept, but the queued "+strings.Join(lost, " and ")+" message was lost"
	case q1 != 1 || q2 != 2:
		r.Verdict, r.Value = No, fmt.Sprintf("queued messages came at QoS %d and %d, not 1 and 2", q1, q2)
	default:
		r.Verdict, r.Value = Yes, "queued QoS 1 and 2 messages delivered on return"
	}
	p.add(r)
	if p.needs5("message_expiry") {
		return nil
	}
	switch {
	case !ca.SessionPresent && p.v != packet.V31:
		p.add(Row{ID: "message_expiry", Verdict: NA, Note: "needs a kept session"})
	case seen["expires"] != 0 || slices.ContainsFunc(got, func(m *packet.Publish) bool { return string(m.Payload) == "expires" }):
		p.add(Row{ID: "message_expiry", Verdict: No, Value: "a queued message was delivered after its expiry"})
	default:
		p.add(Row{ID: "message_expiry", Verdict: Yes, Value: "an expired queued message was dropped"})
	}
	return nil
}

// --- topic aliases ---

func (p *prober) probeTopicAliases(ctx context.Context) error {
	if p.needs5("topic_alias_to_broker", "topic_alias_from_broker") {
		return nil
	}
	t := p.topic("alias")
	sub, _, err := p.open(ctx, func(c *packet.Connect) {
		// [MQTT-3.1.2-26] the broker may use up to this many aliases.
		c.Properties.TopicAliasMaximum = 10
	})
	if err != nil {
		return err
	}
	defer sub.disconnect(nil)
	if _, err := sub.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1}); err != nil {
		return err
	}
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if pub != nil {
			pub.disconnect(nil)
		}
	}()
	if p.connack == nil || p.connack.TopicAliasMaximum == 0 {
		p.add(Row{ID: "topic_alias_to_broker", Verdict: No, Value: "not offered (Topic Alias Maximum 0)"})
		for i := range 3 {
			if _, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte{byte('0' + i)}}); err != nil {
				return err
			}
		}
	} else {
		first := &packet.Publish{Topic: t, QoS: 1, Payload: []byte("0")}
		first.Properties.TopicAlias = 1
		code, err := pub.publish(ctx, p.wait, first)
		ok := err == nil && code < 0x80
		for i := 1; i < 3 && ok; i++ {
			m := &packet.Publish{QoS: 1, Payload: []byte{byte('0' + i)}}
			m.Properties.TopicAlias = 1
			code, err = pub.publish(ctx, p.wait, m)
			ok = err == nil && code < 0x80
		}
		switch {
		case ok:
			p.add(Row{ID: "topic_alias_to_broker", Verdict: Yes, Value: fmt.Sprintf("accepted (up to %d)", p.connack.TopicAliasMaximum)})
		case err != nil && !errors.Is(err, errClosed):
			return err
		default:
			p.add(Row{ID: "topic_alias_to_broker", Verdict: No, Value: "advertised, but a PUBLISH by alias was refused"})
			pub.drop()
			if pub, _, err = p.open(ctx, nil); err != nil {
				return err
			}
			for i := range 3 {
				if _, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte{byte('0' + i)}}); err != nil {
					return err
				}
			}
		}
	}
	aliased, n := 0, 0
	for n < 3 {
		m, err := sub.message(ctx, p.wait, t)
		if err != nil {
			return fmt.Errorf("messages published by alias: %w", err)
		}
		n++
		if m.Properties.TopicAlias != 0 {
			aliased++
		}
	}
	if aliased > 0 {
		p.add(Row{ID: "topic_alias_from_broker", Verdict: Yes, Value: fmt.Sprintf("used aliases in %d of %d messages on one topic", aliased, n)})
	} else {
		p.add(Row{ID: "topic_alias_from_broker", Verdict: No, Value: "sends the full topic every time (the client allowed 10 aliases)"})
	}
	return nil
}

// --- $SYS ---

func (p *prober) probeSys(ctx context.Context) error {
	c, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	defer c.disconnect(nil)
	a, err := c.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: "$SYS/#"})
	if err != nil {
		return err
	}
	if !granted(a) {
		p.add(Row{ID: "sys", Verdict: No, Value: "subscription to $SYS/# refused: " + p.reason(a.Codes[0])})
		return nil
	}
	topics := map[string]string{}
	first := true
	for {
		// Brokers send retained $SYS topics at once and the rest every
		// few seconds: wait a little for the first, then until quiet.
		d := p.quiet
		if first {
			d = 2 * time.Second
		}
		m, err := c.message(ctx, d, "")
		if err != nil {
			break
		}
		first = false
		if strings.HasPrefix(m.Topic, "$SYS/") {
			topics[m.Topic] = string(m.Payload)
		}
	}
	if len(topics) == 0 {
		p.add(Row{ID: "sys", Verdict: No, Value: "nothing on $SYS/# within 2 s"})
		return nil
	}
	version := topics["$SYS/broker/version"]
	r := Row{ID: "sys", Verdict: Yes, Value: fmt.Sprintf("%d topics", len(topics)), Volatile: true}
	if version != "" {
		r.Value += ", version " + version
	}
	p.add(r)
	return nil
}
