package broker

import (
	"errors"
	"math"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fixHook works around faults of mochi-mqtt v2.7.9 (upstream is dormant, so
// they are fixed here rather than there) and applies our connect-time limits.
// Each fix names the fault; broker_test.go has a test for each.
type fixHook struct {
	mqtt.HookBase
	b *Broker
	// predecessorWait bounds how long a new session waits for the teardown
	// of an earlier connection with its client id (defaultPredecessorWait;
	// a test shortens it to hold that teardown back on purpose).
	predecessorWait time.Duration
	// waitingForPredecessor, when set, is called as a new session starts
	// waiting for that teardown (a test seam, see holdWillHook).
	waitingForPredecessor func(clientID string)
	// pendingWills is mochi's table of delayed wills (see OnWill).
	pendingWills *packets.Packets

	mu      sync.Mutex
	next    map[string]int                    // shared group → round-robin position
	pending map[*mqtt.Client][]packets.Packet // inherited in-flight messages, in order

	// unsent holds, per client id, the packet ids of queued QoS 1/2
	// PUBLISH packets not yet written to any connection of the session,
	// so a resend after reconnecting sets DUP only on what was sent.
	umu    sync.Mutex
	unsent map[string]map[uint16]struct{}
}

func (h *fixHook) ID() string { return "mqtk-fixes" }

func (h *fixHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnConnect, mqtt.OnWill, mqtt.OnSelectSubscribers,
		mqtt.OnPacketEncode, mqtt.OnSubscribed, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPacketSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnClientExpired:
		return true
	}
	return false
}

// writeConnack writes a refusing CONNACK straight to the connection, for
// refusals mochi would answer wrongly. It runs before mochi has parsed the
// CONNECT, while nothing else writes to the connection.
func writeConnack(cl *mqtt.Client, version, code byte) {
	b := []byte{0x20, 0x02, 0x00, code}
	if version == 5 {
		b = []byte{0x20, 0x03, 0x00, code, 0x00} // no properties
	}
	_, _ = cl.Net.Conn.Write(b)
}

var errRefusedConnect = errors.New("connect refused")

// OnPacketRead checks a CONNECT before mochi validates it.
func (h *fixHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Connect {
		return pk, nil
	}
	v := pk.ProtocolVersion
	id := pk.Connect.ClientIdentifier
	// mochi answers a 3.1.1 CONNECT with an empty client id and clean
	// session 0 with 0x80, which 3.1.1 does not define; the spec wants
	// 0x02 identifier rejected [MQTT-3.1.3-8]. (Anchor note; raw-packet
	// test TestEmptyClientIDPersistentSessionRefused.)
	if v < 5 && id == "" && !pk.Connect.Clean {
		return h.refuse(cl, pk, 0x02, "empty client id with a persistent session")
	}
	if len(id) > h.b.limits.MaxClientIDLength {
		code := byte(0x02)
		if v == 5 {
			code = packets.ErrClientIdentifierNotValid.Code
		}
		return h.refuse(cl, pk, code, "client id longer than the limit")
	}
	// mosquitto's max_keepalive: 3.1.1 has no way to tell a client to use a
	// shorter keepalive, so a longer (or infinite) one is refused with 0x02.
	if max := h.b.limits.MaxKeepalive; v < 5 && max < math.MaxUint16 && (pk.Connect.Keepalive == 0 || pk.Connect.Keepalive > max) {
		return h.refuse(cl, pk, 0x02, "keepalive above --max-keepalive")
	}
	return pk, nil
}

func (h *fixHook) refuse(cl *mqtt.Client, pk packets.Packet, code byte, why string) (packets.Packet, error) {
	writeConnack(cl, pk.ProtocolVersion, code)
	h.b.log.warn("connect refused", "remote", cl.Net.Remote, "client", pk.Connect.ClientIdentifier, "reason", why)
	return pk, errors.Join(packets.ErrRejectPacket, errRefusedConnect)
}

// OnConnect applies --max-keepalive to MQTT 5 clients: the broker's value is
// sent back as Server Keep Alive [MQTT-3.2.2-21] and used for the deadline.
func (h *fixHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	disableSendQuota(cl)
	h.takeOverTopicAliases(cl)
	max := h.b.limits.MaxKeepalive
	if cl.Properties.ProtocolVersion == 5 && max < math.MaxUint16 && (cl.State.Keepalive == 0 || cl.State.Keepalive > max) {
		cl.State.Keepalive = max
		cl.State.ServerKeepalive = true
	}
	if tc, ok := cl.Net.Conn.(*trackedConn); ok {
		tc.keepalive = cl.State.Keepalive // see trackedConn.SetDeadline
	}
	return nil
}

// takeOverTopicAliases replaces mochi's server-assigned topic aliases with
// ours. mochi assigns an alias when it queues a message, in the copy it
// keeps as in flight, and clears the topic name there once the alias is
// known. A message queued for an offline persistent session therefore
// keeps an alias of a connection that is gone, and after the reconnect it
// is resent with no topic and that alias [MQTT-3.3.2-7] (or, after a
// restart, with no topic at all). mochi sets no capability for this: its
// aliases follow the client's Topic Alias Maximum alone, so that value is
// zeroed here (the CONNECT has been parsed; nothing has been queued yet)
// and fixHook.alias assigns aliases as each PUBLISH is written, per
// connection, bounded by --topic-alias-out-max.
// (TestQueuedMessagesResentWithTopicAfterReconnect)
func (h *fixHook) takeOverTopicAliases(cl *mqtt.Client) {
	if tc, ok := cl.Net.Conn.(*trackedConn); ok && cl.Properties.ProtocolVersion == 5 {
		tc.aliasMax = min(cl.Properties.Props.TopicAliasMaximum, h.b.limits.TopicAliasOutMaximum)
	}
	cl.Properties.Props.TopicAliasMaximum = 0
	cl.State.TopicAliases.Outbound = mqtt.NewOutboundTopicAliases(0)
}

// outAlias is one server-assigned topic alias of a connection.
type outAlias struct {
	id      uint16
	written bool // a PUBLISH carrying both the topic and this alias was written
}

// alias gives an outgoing PUBLISH its connection's alias for the topic,
// assigning a new one while there are free ones. The topic name is left
// out only once a PUBLISH that set up the alias has been written
// (aliasWritten, from OnPacketSent): PUBLISH packets reach the connection
// from more than one goroutine (mochi's writer, the session resend), and
// an alias-only packet must never overtake the one that defines it.
func (c *trackedConn) alias(pk packets.Packet) packets.Packet {
	if c.aliasMax == 0 || pk.TopicName == "" {
		return pk
	}
	c.aliasMu.Lock()
	defer c.aliasMu.Unlock()
	a, ok := c.aliases[pk.TopicName]
	if !ok {
		if len(c.aliases) >= int(c.aliasMax) {
			return pk // all taken: the topic goes in full
		}
		if c.aliases == nil {
			c.aliases = map[string]outAlias{}
		}
		a = outAlias{id: uint16(len(c.aliases) + 1)}
		c.aliases[pk.TopicName] = a
	}
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = a.id, true
	if a.written {
		pk.TopicName = ""
	}
	return pk
}

func (c *trackedConn) aliasWritten(topic string) {
	c.aliasMu.Lock()
	defer c.aliasMu.Unlock()
	if a, ok := c.aliases[topic]; ok && !a.written {
		a.written = true
		c.aliases[topic] = a
	}
}

// OnPacketSent confirms topic aliases and notes queued messages as sent.
func (h *fixHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Connack && pk.SessionPresent && cl.State.Inflight.Len() > 0 {
		h.takeInflight(cl)
		return
	}
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if tc, ok := cl.Net.Conn.(*trackedConn); ok && pk.Properties.TopicAliasFlag && pk.TopicName != "" {
		tc.aliasWritten(pk.TopicName)
	}
	if pk.FixedHeader.Qos > 0 {
		h.markSent(cl.ID, pk.PacketID)
	}
}

// OnQosPublish notes a QoS 1/2 message as queued and not yet sent.
func (h *fixHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline || resends > 0 {
		return
	}
	h.umu.Lock()
	defer h.umu.Unlock()
	if h.unsent == nil {
		h.unsent = map[string]map[uint16]struct{}{}
	}
	ids := h.unsent[cl.ID]
	if ids == nil {
		ids = map[uint16]struct{}{}
		h.unsent[cl.ID] = ids
	}
	ids[pk.PacketID] = struct{}{}
}

func (h *fixHook) markSent(client string, id uint16) {
	h.umu.Lock()
	defer h.umu.Unlock()
	if ids := h.unsent[client]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(h.unsent, client)
		}
	}
}

// neverSent reports whether the queued message id of client was never
// written. After a restart nothing is known, and DUP is set, as for a
// message that may have been sent.
func (h *fixHook) neverSent(client string, id uint16) bool {
	h.umu.Lock()
	defer h.umu.Unlock()
	_, ok := h.unsent[client][id]
	return ok
}

func (h *fixHook) forgetUnsent(client string) {
	h.umu.Lock()
	defer h.umu.Unlock()
	delete(h.unsent, client)
}

// OnQosComplete and OnQosDropped end a message's life in the table.
func (h *fixHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { h.markSent(cl.ID, pk.PacketID) }

func (h *fixHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !cl.IsTakenOver() { // a take-over moves the messages, it does not drop them
		h.markSent(cl.ID, pk.PacketID)
	}
}

// OnClientExpired forgets an expired session's queued messages.
func (h *fixHook) OnClientExpired(cl *mqtt.Client) { h.forgetUnsent(cl.ID) }

// disableSendQuota turns off mochi's outbound send quota for cl. After
// every packet a client sends, mochi v2.7.9 checks "in-flight messages and
// quota left" and then calls Inflight.NextImmediate, which takes the
// in-flight read lock and, inside it, calls GetAll, which takes it again. A
// publisher adding to that client's in-flight map between the two RLocks
// queues a writer, and Go's RWMutex then blocks the second RLock for good:
// the subscriber's reader, every publisher to it and mochi's event loop
// deadlock. `mqtk bench -q 1` (10 publishers, 1 subscriber) froze the
// broker within a second every time. With quota and maximum at 0 the
// NextImmediate path is never entered and QoS 1/2 messages go straight to
// the outbound queue, which stays bounded by --max-queued (and the session
// store by --max-inflight). The cost: the client's MQTT 5 Receive Maximum
// is not enforced by the broker; mqtk's own clients announce 1024.
func disableSendQuota(cl *mqtt.Client) {
	cl.State.Inflight.ResetSendQuota(0)
}

// OnWill: mochi publishes a delayed will even when the client reconnects
// within the will delay (the EMQX-derived test
// test_no_will_message_if_reconnect_in_time fails against it). The new
// connection clears mochi's pending-will table, but the old connection's
// goroutine may add its will only afterwards. A connection ended by a
// session take-over is exactly "the client reconnected", so its delayed
// will is turned into a no-op: no delay (nothing enters the table) and an
// empty topic, which no subscription matches. [MQTT-3.1.3-9]
//
// The old goroutine may run this before the new connection has marked it
// as taken over; for that ordering waitForPredecessor removes the will
// from the table once the old connection is done.
// (TestWillNotPublishedWhenClientReconnectsWithinDelay drives it.)
func (h *fixHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.WillDelayInterval == 0 {
		return will, nil
	}
	if !errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) && !cl.IsTakenOver() {
		return will, nil
	}
	// Only this connection's goroutine reads its will, right after us.
	cl.Properties.Will.WillDelayInterval = 0
	return mqtt.Will{}, nil
}

// OnSelectSubscribers: mochi picks a shared-subscription member from a map
// iteration, i.e. at random and whether or not it is connected, so messages
// go to dead sessions while live members idle. We choose among connected
// members in turn (round robin per group), falling back to any member when
// none is connected so a persistent session still queues the message.
func (h *fixHook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if len(subs.Shared) == 0 {
		return subs
	}
	subs.SharedSelected = map[string]packets.Subscription{}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == nil {
		h.next = map[string]int{}
	}
	for group, members := range subs.Shared {
		ids := make([]string, 0, len(members))
		live := make([]string, 0, len(members))
		for id := range members {
			ids = append(ids, id)
			if cl, ok := h.b.srv.Clients.Get(id); ok && !cl.Closed() {
				live = append(live, id)
			}
		}
		pool := live
		if len(pool) == 0 {
			pool = ids
		}
		sort.Strings(pool)
		i := h.next[group] % len(pool)
		h.next[group] = i + 1
		id := pool[i]
		sub := members[id]
		if prev, ok := subs.SharedSelected[id]; ok {
			sub = prev.Merge(sub)
		}
		subs.SharedSelected[id] = sub
	}
	return subs
}

// Resending a session's queued messages in order. mochi resends inherited
// in-flight messages sorted by uint16(Created), i.e. by the second they were
// created with ties in map order, so messages queued within the same second
// arrive shuffled, against [MQTT-4.6.0-2]/[MQTT-4.6.0-3] (seen with
// mosquitto_sub -c: queued2, queued3, queued1). mochi sends CONNACK between
// inheriting the session and resending; once that CONNACK is written we
// take the messages out of the in-flight table (takeInflight, so mochi's
// resend finds none) and once the session is established we put them back
// and send them ourselves, ordered by creation time and then packet id.
func (h *fixHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	// A v5 client that sets Request Problem Information to 0 (paho.golang
	// does unless told otherwise) gets no user properties from mochi on any
	// packet, PUBLISH included. [MQTT-3.1.2-29] forbids them only on packets
	// other than PUBLISH, CONNACK and DISCONNECT: a publisher's user
	// properties are application data and must reach every subscriber.
	// (TestUserPropertiesReachClientsNotWantingProblemInfo)
	if pk.FixedHeader.Type == packets.Publish && pk.Mods.DisallowProblemInfo {
		pk.Mods.DisallowProblemInfo = false
	}
	if pk.FixedHeader.Type == packets.Publish {
		// Aliases are the connection's, never the stored message's
		// (takeOverTopicAliases).
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
		if tc, ok := cl.Net.Conn.(*trackedConn); ok {
			pk = tc.alias(pk)
		}
		return pk
	}
	return pk
}

// takeInflight is the first half of the ordered resend: after the CONNACK
// that presents a session has been written, the queued messages leave the
// in-flight table (mochi's resend, next, finds none). Done after the write
// rather than at encoding, so that a CONNACK that fails to go out leaves
// the session's queue where mochi keeps it.
func (h *fixHook) takeInflight(cl *mqtt.Client) {
	msgs := cl.State.Inflight.GetAll(false)
	sort.SliceStable(msgs, func(i, j int) bool {
		if msgs[i].Created != msgs[j].Created {
			return msgs[i].Created < msgs[j].Created
		}
		return msgs[i].PacketID < msgs[j].PacketID
	})
	for _, m := range msgs {
		cl.State.Inflight.Delete(m.PacketID)
	}
	h.mu.Lock()
	if h.pending == nil {
		h.pending = map[*mqtt.Client][]packets.Packet{}
	}
	h.pending[cl] = msgs
	h.mu.Unlock()
}

func (h *fixHook) takePending(cl *mqtt.Client) []packets.Packet {
	h.mu.Lock()
	defer h.mu.Unlock()
	msgs := h.pending[cl]
	delete(h.pending, cl)
	return msgs
}

// defaultPredecessorWait bounds how long a new session waits for the
// teardown of an earlier connection with its client id; that teardown does
// not block on the network, so this is a safety net, not a timing.
const defaultPredecessorWait = 5 * time.Second

// OnSessionEstablish runs just before mochi looks for an existing session
// under the client id. It notes the connection of an earlier client with
// the same id, if any, for OnSessionEstablished.
//
// The fault: when a clean-session client leaves, mochi checks that it was
// not taken over, then removes its subscriptions from the topic tree and
// the client from its list, both by client id. A client that reconnects
// with the same id in between is removed from the list, or loses the
// subscriptions it has just made, and receives nothing. (mochi v2.7.9,
// server.go attachClient; no upstream fix.)
func (h *fixHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	c, ok := cl.Net.Conn.(*trackedConn)
	if !ok {
		return
	}
	if old, ok := h.b.srv.Clients.Get(cl.ID); ok && old != cl {
		if oc, ok := old.Net.Conn.(*trackedConn); ok {
			c.predecessor = oc
		}
		// mochi is about to tell the old connection DISCONNECT 0x8E. In
		// 3.1.1 a server never sends DISCONNECT (mosquitto_sub reports a
		// protocol error): close that connection first, so mochi's write
		// finds it closed. It is what mochi's own Stop, right after the
		// write, would do.
		if old.Properties.ProtocolVersion < 5 && !old.Closed() {
			old.Stop(packets.ErrSessionTakenOver)
		}
	}
}

// waitForPredecessor lets the earlier connection's teardown finish before
// this client reads its first packet (so before it subscribes), and puts
// the client back in mochi's list if that teardown removed it by id.
func (h *fixHook) waitForPredecessor(cl *mqtt.Client) {
	c, ok := cl.Net.Conn.(*trackedConn)
	if !ok || c.predecessor == nil {
		return
	}
	old := c.predecessor
	c.predecessor = nil
	if h.waitingForPredecessor != nil {
		h.waitingForPredecessor(cl.ID)
	}
	t := time.NewTimer(h.predecessorWait)
	defer t.Stop()
	select {
	case <-old.finished:
		// The earlier connection has handled its will by now. If it
		// queued a delayed one after mochi cleared the table for this
		// reconnect, it goes here [MQTT-3.1.3-9] (see OnWill).
		h.pendingWills.Delete(cl.ID)
	case <-t.C:
		h.b.log.warn("an earlier connection with the same client id is slow to close", "client", cl.ID)
	}
	if _, ok := h.b.srv.Clients.Get(cl.ID); !ok && !cl.Closed() {
		h.b.srv.Clients.Add(cl)
	}
}

func (h *fixHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.waitForPredecessor(cl)
	// An inherited session may have had its quota reset after OnConnect.
	disableSendQuota(cl)
	// A queued message whose expiry passed while the client was away and
	// that was never sent must be deleted, not delivered [MQTT-3.3.2-5];
	// mochi's once-a-second sweep can miss the reconnect by up to a
	// second. Onward delivery that had started continues.
	now := time.Now().Unix()
	var msgs []packets.Packet
	for _, m := range h.takePending(cl) {
		if m.FixedHeader.Type == packets.Publish && m.Expiry > 0 && m.Expiry <= now && h.neverSent(cl.ID, m.PacketID) {
			h.dropQueued(cl, m)
			continue
		}
		msgs = append(msgs, m)
	}
	for _, m := range msgs {
		cl.State.Inflight.Set(m)
	}
	for _, m := range msgs {
		if m.FixedHeader.Type == packets.Publish {
			// DUP only on a message that may have been sent before
			// [MQTT-3.3.1-1]; mochi marks every resent message, including
			// ones queued while the client was away and never sent.
			m.FixedHeader.Dup = !h.neverSent(cl.ID, m.PacketID)
		}
		if err := cl.WritePacket(m); err != nil {
			if errors.Is(err, packets.ErrPacketTooLarge) {
				// Over the client's Maximum Packet Size: it can never be
				// sent, and stopping here would stall the session at this
				// message on every reconnect [MQTT-3.1.2-25].
				if cl.State.Inflight.Delete(m.PacketID) {
					h.dropQueued(cl, m)
				}
				continue
			}
			return // the connection is gone; the messages stay queued
		}
		if m.FixedHeader.Type == packets.Puback || m.FixedHeader.Type == packets.Pubcomp {
			cl.State.Inflight.Delete(m.PacketID)
		}
	}
}

// dropQueued accounts for a queued message that is discarded rather than
// resent, as mochi does for the messages it drops: out of the in-flight
// count, into the dropped count, and forgotten as unsent.
func (h *fixHook) dropQueued(cl *mqtt.Client, m packets.Packet) {
	atomic.AddInt64(&h.b.srv.Info.Inflight, -1)
	atomic.AddInt64(&h.b.srv.Info.MessagesDropped, 1)
	h.markSent(cl.ID, m.PacketID)
}

// OnDisconnect puts back messages taken at CONNACK when the connection
// ended before the session was established, so none is lost.
func (h *fixHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	for _, m := range h.takePending(cl) {
		cl.State.Inflight.Set(m)
	}
	if expire && !cl.IsTakenOver() {
		h.forgetUnsent(cl.ID)
	}
}

// OnSubscribed gives retained messages their subscription identifier.
// mochi sends the retained messages matching a new subscription with the
// subscription as it came in the SUBSCRIBE, whose identifier map is only
// built when live messages are matched, so they arrive without the
// identifier [MQTT-3.3.4-3] demands and a client that routes by identifier
// drops them. mochi calls this hook with the same Filters slice it then
// walks for the retained messages, after storing its own copies of each
// subscription; filling the map on the slice's elements reaches only the
// retained sends, and the stored subscriptions (whose maps mochi mutates
// when merging overlapping ones) stay untouched.
// (TestRetainedMessagesCarrySubscriptionIdentifier)
func (h *fixHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	for i := range pk.Filters {
		if sub := &pk.Filters[i]; sub.Identifier > 0 && sub.Identifiers == nil {
			sub.Identifiers = map[string]int{sub.Filter: sub.Identifier}
		}
	}
}

// mochiPendingWills returns mochi's table of delayed wills, which it keeps
// unexported (Server.loop.willDelayed). The fields are found by name and
// type, and New fails if a mochi upgrade changes them, rather than the
// workaround silently doing nothing.
func mochiPendingWills(srv *mqtt.Server) (*packets.Packets, error) {
	errChanged := errors.New("mochi's Server.loop.willDelayed changed: the will workaround needs updating for this mochi version")
	lp := reflect.ValueOf(srv).Elem().FieldByName("loop")
	if !lp.IsValid() || lp.Kind() != reflect.Pointer || lp.IsNil() {
		return nil, errChanged
	}
	f := lp.Elem().FieldByName("willDelayed")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*packets.Packets]() {
		return nil, errChanged
	}
	p := *(**packets.Packets)(unsafe.Pointer(f.UnsafeAddr()))
	if p == nil {
		return nil, errChanged
	}
	return p, nil
}
