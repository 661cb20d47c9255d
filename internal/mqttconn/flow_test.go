package mqttconn

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/ui"
)

// TestReceiveMaximum: with the broker announcing a receive maximum of 3,
// PublishAsync must never have more than 3 QoS 1/2 messages unacknowledged
// on the wire [MQTT-4.9.0-2], read off the packet trace, and must still
// deliver everything in order.
func TestReceiveMaximum(t *testing.T) { bothClients(t, testReceiveMaximum) }

func testReceiveMaximum(t *testing.T, native bool) {
	for _, name := range brokertest.Names() {
		t.Run(name, func(t *testing.T) {
			// mosquitto announces max_inflight_messages as its Receive
			// Maximum. brokertest has no mqtk equivalent for that line
			// (mqtk's MaxInflight bounds a session's queue, not the
			// window), so mqtk's broker is given the announced value as
			// what it is there, Limits.ReceiveMaximum.
			var port int
			if name == brokertest.Mosquitto {
				port = brokertest.Start(t, name, mosquittotest.Options{Global: "max_inflight_messages 3"}).Port()
			} else {
				port = ownBroker(t, broker.Limits{ReceiveMaximum: 3})
			}
			var trace ui.SyncBuffer
			cfg := defaultFor(native)
			cfg.Host, cfg.Port = "127.0.0.1", port
			col := newCollector()
			subCfg := cfg
			subCfg.OnMessage = col.on
			sub := dial(t, subCfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := sub.Subscribe(ctx, []Subscription{{Filter: "flow/#", QoS: 1}}); err != nil {
				t.Fatal(err)
			}
			cfg.Debug = &trace
			pub := dial(t, cfg)
			if rm := pub.Info().ReceiveMaximum; rm != 3 {
				t.Fatalf("receive maximum from CONNACK = %d, want 3", rm)
			}
			const n = 200
			var wg sync.WaitGroup
			var mu sync.Mutex
			var order []int
			for i := 0; i < n; i++ {
				wg.Add(1)
				i := i
				pub.PublishAsync(ctx, &Message{Topic: "flow/x", Payload: []byte(fmt.Sprint(i)), QoS: byte(1 + i%2)}, func(err error) {
					if err != nil {
						t.Errorf("publish %d: %v", i, err)
					}
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					wg.Done()
				})
			}
			wg.Wait()
			for i, v := range order {
				if v != i {
					t.Fatalf("done callbacks out of order at %d: %v", i, order[:i+1])
				}
			}
			col.wait(t, n)
			pubRe := regexp.MustCompile(`^mqtk: → PUBLISH .* qos=[12] id=(\d+)`)
			ackRe := regexp.MustCompile(`^mqtk: ← (PUBACK|PUBCOMP) id=(\d+)`)
			inflight, peak, sent := 0, 0, 0
			for _, line := range strings.Split(trace.String(), "\n") {
				switch {
				case pubRe.MatchString(line):
					inflight++
					sent++
					if inflight > peak {
						peak = inflight
					}
				case ackRe.MatchString(line):
					inflight--
				}
			}
			if sent != n {
				t.Fatalf("trace shows %d PUBLISH packets, want %d", sent, n)
			}
			if peak > 3 {
				t.Errorf("%d messages in flight at once, receive maximum is 3", peak)
			}
		})
	}
}
