package mqttconn

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker"
)

// ownBrokerURLs starts mqtk's own broker in this process, listening on
// TCP and WebSocket on 127.0.0.1 and on a unix socket, and stops it when
// the test ends. It returns the listeners' URLs: the client's contract is
// tested against it as well as against Debian's mosquitto, and without
// mosquitto installed.
func ownBrokerURLs(t *testing.T) []string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mqtt.sock")
	b, err := broker.New(broker.Options{
		Listeners:      []string{"tcp://127.0.0.1:0", "ws://127.0.0.1:0/mqtt", "unix://" + sock},
		AllowAnonymous: true,
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
		_ = b.Close(ctx)
	})
	var urls []string
	for _, l := range b.Listeners() {
		urls = append(urls, l.URL())
	}
	if len(urls) != 3 {
		t.Fatalf("listeners %v, want tcp, ws and unix", urls)
	}
	return urls
}

// The round trip of every protocol version, over every transport, with
// both clients, against mqtk's own broker.
func TestRoundTripOwnBroker(t *testing.T) {
	urls := ownBrokerURLs(t)
	bothClients(t, func(t *testing.T, native bool) {
		for _, u := range urls {
			for _, v := range []Version{V5, V311, V31} {
				t.Run(u+"/"+v.String(), func(t *testing.T) {
					cfg := defaultFor(native)
					cfg.URL, cfg.Version = u, v
					roundTrip(t, cfg)
				})
			}
		}
	})
}
