package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
)

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
