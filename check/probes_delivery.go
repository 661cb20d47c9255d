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
