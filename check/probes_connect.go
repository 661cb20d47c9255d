package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

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
