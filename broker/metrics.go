package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// metricsHook counts what mochi's own $SYS counters do not break down: PUBLISH
// packets and payload bytes by direction and QoS, drops by cause, and failed
// logins. Gauges mochi already keeps exactly (clients connected,
// subscriptions, retained messages, network bytes) are read from the server
// when /metrics is scraped, so the two can never disagree.
//
// Concurrency: every field is an atomic; the publish path takes no lock.
type metricsHook struct {
	mqtt.HookBase

	msgsIn, msgsOut   [3]atomic.Uint64 // PUBLISH packets by QoS
	bytesIn, bytesOut [3]atomic.Uint64 // PUBLISH payload bytes by QoS

	droppedQueueFull atomic.Uint64 // a client's outbound queue was full (mochi MaximumClientWritesPending)
	droppedInflight  atomic.Uint64 // a queued/in-flight QoS 1/2 message was discarded (expiry, clean takeover)
	authFailures     atomic.Uint64 // CONNECTs refused for bad credentials or certificates
	connects         atomic.Uint64 // sessions established
	subscribeDenied  atomic.Uint64 // SUBSCRIBE filters refused (reason code >= 0x80)
}

func newMetricsHook() *metricsHook { return &metricsHook{} }

// ID implements mqtt.Hook.
func (m *metricsHook) ID() string { return "mqtk-metrics" }

// Provides implements mqtt.Hook.
func (m *metricsHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnPacketSent, mqtt.OnPublishDropped, mqtt.OnQosDropped,
		mqtt.OnSessionEstablished, mqtt.OnSubscribed:
		return true
	}
	return false
}

// authFailed counts a refused login; broker-core's auth hook calls it.
func (m *metricsHook) authFailed() { m.authFailures.Add(1) }

func qosIndex(q byte) int {
	if q > 2 {
		return 2
	}
	return int(q)
}

// OnPacketRead counts incoming PUBLISH packets as they arrive from the network
// (including ones an ACL later refuses, as mosquitto's $SYS counters do).
func (m *metricsHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish {
		q := qosIndex(pk.FixedHeader.Qos)
		m.msgsIn[q].Add(1)
		m.bytesIn[q].Add(uint64(len(pk.Payload)))
	}
	return pk, nil
}

// OnPacketSent counts PUBLISH packets written to subscribers.
func (m *metricsHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Publish {
		q := qosIndex(pk.FixedHeader.Qos)
		m.msgsOut[q].Add(1)
		m.bytesOut[q].Add(uint64(len(pk.Payload)))
	}
}

// OnPublishDropped counts messages dropped because a subscriber's outbound
// queue was full.
func (m *metricsHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	m.droppedQueueFull.Add(1)
}

// OnQosDropped counts queued or in-flight QoS 1/2 messages that were thrown
// away. A session takeover "drops" the old connection's copies after moving
// them to the new one; those are not losses.
func (m *metricsHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	m.droppedInflight.Add(1)
}

// OnSessionEstablished counts successful connections.
func (m *metricsHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	m.connects.Add(1)
}

// OnSubscribed counts refused filters.
func (m *metricsHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	for _, c := range reasonCodes {
		if c >= packets.ErrUnspecifiedError.Code {
			m.subscribeDenied.Add(1)
		}
	}
}
