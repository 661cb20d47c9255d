package mqttconn

import (
	"net"
	"strconv"
	"testing"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/broker/brokertest"
)

// ownBroker starts mqtk's own broker in this process, with one TCP
// listener on 127.0.0.1 and the given limits, stops it when the test ends
// and returns the listener's port. It is for a setting brokertest cannot
// pass on from a mosquitto configuration line (see TestReceiveMaximum);
// every other test reaches mqtk's broker through brokertest, beside
// Debian's mosquitto.
func ownBroker(t *testing.T, limits broker.Limits) int {
	t.Helper()
	b := brokertest.Own(t, broker.Options{
		Listeners:      []string{"tcp://127.0.0.1:0"},
		AllowAnonymous: true,
		Limits:         limits,
	})
	_, p, err := net.SplitHostPort(b.Listeners()[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
