package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/mqtk/mqtk/internal/packet"
)

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
	sub, held, done, err := p.unackedBurst(ctx, t, sent, func(c *packet.Connect) {
		c.Properties.ReceiveMaximum = limit
	})
	if err != nil {
		return err
	}
	defer done()
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

// unackedBurst opens a subscriber to topic t at QoS 1 that acknowledges
// nothing (its CONNECT edited by edit) and a publisher, publishes sent
// QoS 1 messages on t, and returns the subscriber with what it received
// before the broker fell quiet. done disconnects both.
func (p *prober) unackedBurst(ctx context.Context, t string, sent int, edit func(*packet.Connect)) (sub *rawConn, held []*packet.Publish, done func(), err error) {
	sub, _, err = p.open(ctx, edit)
	if err != nil {
		return nil, nil, nil, err
	}
	sub.autoAck.Store(false)
	if _, err := sub.subscribe(ctx, p.wait, 0, packet.Subscription{Filter: t, QoS: 1}); err != nil {
		sub.disconnect(nil)
		return nil, nil, nil, err
	}
	pub, _, err := p.open(ctx, nil)
	if err != nil {
		sub.disconnect(nil)
		return nil, nil, nil, err
	}
	done = func() {
		sub.disconnect(nil)
		pub.disconnect(nil)
	}
	for i := range sent {
		if _, err := pub.publish(ctx, p.wait, &packet.Publish{Topic: t, QoS: 1, Payload: []byte{byte('0' + i)}}); err != nil {
			done()
			return nil, nil, nil, err
		}
	}
	for {
		m, err := sub.message(ctx, p.quiet, t)
		if errors.Is(err, errQuiet) {
			return sub, held, done, nil
		}
		if err != nil {
			done()
			return nil, nil, nil, err
		}
		held = append(held, m)
	}
}

// probeInflightWindow measures how many QoS 1 messages the broker has
// unacknowledged towards a client that sets no limit of its own (MQTT 5
// without Receive Maximum means 65,535; 3.1.1 has no way to say): the
// broker's own in-flight limit (mosquitto's max_inflight_messages).
func (p *prober) probeInflightWindow(ctx context.Context) error {
	const sent = 30
	t := p.topic("window")
	// Kept unacknowledged: the window is what is out at once.
	_, held, done, err := p.unackedBurst(ctx, t, sent, nil)
	if err != nil {
		return err
	}
	defer done()
	n := len(held)
	r := Row{ID: "inflight_window", Verdict: Info, Number: num(float64(n)),
		Value: fmt.Sprintf("%d QoS 1 messages unacknowledged at once", n)}
	if n >= sent {
		r.Value = fmt.Sprintf("no limit below %d (all sent without waiting)", sent)
	}
	p.add(r)
	return nil
}

// maxProbedReceiveMaximum bounds the broker Receive Maximum the probe
// below exceeds: it sends one more PUBLISH than the limit, and a broker
// that announces thousands is not worth that many.
const maxProbedReceiveMaximum = 1024

// probeBrokerReceiveMaximum sends the broker one more QoS 2 PUBLISH than
// the Receive Maximum its CONNACK announced, all at once and never
// released, and sees what it does. MQTT 5 says a client must not
// [MQTT-3.3.4-7], and that a server receiving more uses DISCONNECT with
// 0x93 Receive Maximum exceeded (3.3.4, 4.13). QoS 2 makes the count
// certain: each PUBLISH stays unacknowledged until PUBREL, which the probe
// never sends, whereas a broker acknowledges QoS 1 as fast as it reads.
func (p *prober) probeBrokerReceiveMaximum(ctx context.Context) error {
	const id = "receive_maximum_disconnect"
	if p.needs5(id) {
		return nil
	}
	switch {
	case p.connack == nil:
		p.add(Row{ID: id, Verdict: NA, Note: "needs the CONNACK's properties, which the CONNACK probe did not get"})
		return nil
	case !p.connack.Has(packet.PropReceiveMaximum):
		p.add(Row{ID: id, Verdict: NA, Note: "the broker announces no Receive Maximum (65535 by default): too many to exceed in a probe"})
		return nil
	case p.connack.Has(packet.PropMaximumQoS) && p.connack.MaximumQoS < 2:
		p.add(Row{ID: id, Verdict: NA, Note: fmt.Sprintf("needs QoS 2 (the broker's Maximum QoS is %d)", p.connack.MaximumQoS)})
		return nil
	case p.connack.ReceiveMaximum > maxProbedReceiveMaximum:
		p.add(Row{ID: id, Verdict: NA, Note: fmt.Sprintf("Receive Maximum %d: more than the %d publishes this probe sends at most", p.connack.ReceiveMaximum, maxProbedReceiveMaximum)})
		return nil
	}
	limit := int(p.connack.ReceiveMaximum)
	c, _, err := p.open(ctx, nil)
	if err != nil {
		return err
	}
	// Nothing subscribes to the topic and nothing is retained; the
	// session ends with the connection (clean start, no expiry), taking
	// the unreleased flows with it.
	defer c.disconnect(nil)
	t := p.topic("rmx")
	publish := func(n int) ([]uint16, error) {
		ids := make([]uint16, n)
		ps := make([]packet.Packet, n)
		for i := range ids {
			ids[i] = c.id()
			ps[i] = &packet.Publish{Topic: t, QoS: 2, PacketID: ids[i], Payload: []byte("x")}
		}
		if err := c.sendAll(ps...); err != nil {
			return nil, fmt.Errorf("send PUBLISH: %w", err)
		}
		return ids, nil
	}
	// answer waits for the broker's answer to the PUBLISH with packet id
	// pid: its PUBREC code, or the DISCONNECT that ended the connection
	// (nil with errClosed when it closed without one).
	answer := func(pid uint16) (packet.ReasonCode, *packet.Disconnect, error) {
		pk, err := c.next(ctx, p.wait, func(x packet.Packet) bool {
			if a, ok := x.(*packet.Ack); ok {
				return a.Kind == packet.TypePubrec && a.PacketID == pid
			}
			_, ok := x.(*packet.Disconnect)
			return ok
		})
		if err != nil {
			return 0, nil, err
		}
		if d, ok := pk.(*packet.Disconnect); ok {
			return 0, d, nil
		}
		return pk.(*packet.Ack).Code, nil, nil
	}
	// ended describes how the connection ended at the n-th unreleased
	// PUBLISH, as a row.
	ended := func(n int, d *packet.Disconnect) Row {
		r := Row{ID: id, Verdict: Yes}
		at := fmt.Sprintf("at unreleased QoS 2 PUBLISH %d (Receive Maximum %d)", n, limit)
		switch {
		case d == nil:
			r.Value, r.Note = "closed the connection without DISCONNECT "+at, "MQTT 5 has the broker send DISCONNECT 0x93 (receive maximum exceeded)"
		case d.Code == packet.ReceiveMaximumExceeded:
			r.Value = "DISCONNECT " + p.reason(d.Code) + " " + at
		default:
			r.Value, r.Note = "DISCONNECT "+p.reason(d.Code)+" "+at, "MQTT 5 names 0x93 (receive maximum exceeded) for this"
		}
		return r
	}

	ids, err := publish(limit + 1)
	if err != nil {
		return err
	}
	for i, pid := range ids[:limit] {
		code, d, err := answer(pid)
		switch {
		case errors.Is(err, errClosed) || d != nil:
			// Within the limit: the broker has a stricter one of its own.
			r := ended(i+1, d)
			r.Verdict, r.Value = No, "disconnected before its own Receive Maximum: "+r.Value
			p.add(r)
			return nil
		case err != nil:
			return fmt.Errorf("wait for PUBREC %d of %d: %w", i+1, limit, err)
		case code >= 0x80:
			p.add(Row{ID: id, Verdict: No, Value: fmt.Sprintf("refused unreleased QoS 2 PUBLISH %d, within its Receive Maximum of %d: %s", i+1, limit, p.reason(code))})
			return nil
		}
	}
	// The first one over.
	code, d, err := answer(ids[limit])
	switch {
	case errors.Is(err, errClosed) || d != nil:
		p.add(ended(limit+1, d))
		return nil
	case errors.Is(err, errQuiet):
		p.add(Row{ID: id, Verdict: No, Value: fmt.Sprintf("did not answer unreleased QoS 2 PUBLISH %d (Receive Maximum %d) and stayed connected", limit+1, limit)})
		return nil
	case err != nil:
		return fmt.Errorf("wait for the answer to PUBLISH %d: %w", limit+1, err)
	}
	// Still connected: one more shows whether the broker keeps refusing.
	first := "accepted"
	if code >= 0x80 {
		first = "refused with PUBREC " + p.reason(code)
	}
	ids, err = publish(1)
	if err != nil {
		return err
	}
	code2, d, err := answer(ids[0])
	second := ""
	switch {
	case errors.Is(err, errClosed) || d != nil:
		r := ended(limit+2, d)
		r.Value = fmt.Sprintf("PUBLISH %d %s; then %s", limit+1, first, r.Value)
		p.add(r)
		return nil
	case err != nil && !errors.Is(err, errQuiet):
		return fmt.Errorf("wait for the answer to PUBLISH %d: %w", limit+2, err)
	case err != nil:
		second = "not answered"
	case code2 >= 0x80:
		second = "refused with PUBREC " + p.reason(code2)
	default:
		second = "accepted"
	}
	p.add(Row{ID: id, Verdict: No, Value: fmt.Sprintf("stayed connected over its Receive Maximum of %d: PUBLISH %d %s, PUBLISH %d %s", limit, limit+1, first, limit+2, second)})
	return nil
}
