package broker

import (
	"context"
	"strconv"
	"time"

	"github.com/mqtk/mqtk/broker/engine"
)

// sysInterval is how often the $SYS topics are refreshed (mosquitto's
// sys_interval default).
const sysInterval = 10 * time.Second

// uptime is how long the broker has served.
func (b *Broker) uptime() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.startedAt.IsZero() {
		return 0
	}
	return time.Since(b.startedAt)
}

// startSys publishes the $SYS topics now and every sysInterval until
// Close, as retained messages, under mosquitto's names so existing
// dashboards keep working. Called from Start with b.mu held.
func (b *Broker) startSys() {
	stop := make(chan struct{})
	done := make(chan struct{})
	b.extraStop = append(b.extraStop, func(context.Context) error {
		close(stop)
		<-done
		return nil
	})
	go func() {
		defer close(done)
		t := time.NewTicker(sysInterval)
		defer t.Stop()
		started := time.Now()
		for {
			b.publishSys(time.Since(started))
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (b *Broker) publishSys(up time.Duration) {
	version := b.opts.Version
	if version == "" {
		version = "dev"
	}
	st := b.eng.Stats()
	sum := func(v [3]uint64) uint64 { return v[0] + v[1] + v[2] }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, kv := range [][2]string{
		{"version", "mqtk " + version},
		{"uptime", strconv.FormatInt(int64(up/time.Second), 10) + " seconds"},
		{"clients/connected", strconv.Itoa(st.Clients)},
		{"clients/total", strconv.Itoa(st.Sessions)},
		{"subscriptions/count", strconv.Itoa(st.Subscriptions)},
		{"retained messages/count", strconv.Itoa(st.Retained)},
		{"messages/received", u(sum(st.MsgsIn))},
		{"messages/sent", u(sum(st.MsgsOut))},
		{"bytes/received", u(st.NetIn)},
		{"bytes/sent", u(st.NetOut)},
		{"messages/dropped", u(st.Dropped)},
	} {
		// $SYS values are the broker's own: not stored, and a failure
		// cannot happen without a store.
		_ = b.eng.Publish(&engine.Message{Topic: "$SYS/broker/" + kv[0], Payload: []byte(kv[1]), Retain: true}, false)
	}
}
