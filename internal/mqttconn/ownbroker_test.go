package mqttconn

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker"
)

// ownBroker starts mqtk's own broker in this process, with one TCP
// listener on 127.0.0.1 and the given limits, stops it when the test ends
// and returns the listener's port. It is for a setting brokertest cannot
// pass on from a mosquitto configuration line (see TestReceiveMaximum);
// every other test reaches mqtk's broker through brokertest, beside
// Debian's mosquitto.
func ownBroker(t *testing.T, limits broker.Limits) int {
	t.Helper()
	b, err := broker.New(broker.Options{
		Listeners:      []string{"tcp://127.0.0.1:0"},
		AllowAnonymous: true,
		Limits:         limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close mqtk broker: %v", err)
		}
	})
	ls := b.Listeners()
	if len(ls) != 1 {
		t.Fatalf("listeners %v, want one", ls)
	}
	_, p, err := net.SplitHostPort(ls[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
