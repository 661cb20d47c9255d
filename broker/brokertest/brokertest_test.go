package brokertest

import (
	"net"
	"reflect"
	"testing"

	"github.com/mqtk/mqtk/broker"
	"github.com/mqtk/mqtk/internal/mosquittotest"
)

func TestGroup(t *testing.T) {
	a := &mosquittotest.TLS{CertFile: "a.pem", KeyFile: "a-key.pem"}
	a2 := &mosquittotest.TLS{CertFile: "a.pem", KeyFile: "a-key.pem"}
	m := &mosquittotest.TLS{CertFile: "a.pem", KeyFile: "a-key.pem", CAFile: "ca.pem", RequireCertificate: true}
	for _, tc := range []struct {
		ls   []mosquittotest.Listener
		want [][]int
	}{
		{[]mosquittotest.Listener{{}}, [][]int{{0}}},
		{[]mosquittotest.Listener{{}, {TLS: a}, {WebSockets: true}, {WebSockets: true, TLS: a2}}, [][]int{{0, 1, 2, 3}}},
		{[]mosquittotest.Listener{{TLS: a}, {TLS: m}, {TLS: a, WebSockets: true}}, [][]int{{0, 2}, {1}}},
		{[]mosquittotest.Listener{{TLS: m}, {}, {TLS: a}}, [][]int{{0, 1}, {2}}},
	} {
		if got := group(tc.ls); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("group(%d listeners) = %v, want %v", len(tc.ls), got, tc.want)
		}
	}
}

func TestDirectives(t *testing.T) {
	l, err := Directives("max_packet_size 200\n\nmax_topic_alias 5\nmax_queued_messages 0\n")
	if err != nil {
		t.Fatal(err)
	}
	want := broker.Limits{MaxPacketSize: 200, TopicAliasMaximum: 5, MaxInflight: 65535}
	if l != want {
		t.Errorf("limits %+v, want %+v", l, want)
	}
	if l, _ := Directives("max_queued_messages 50"); l.MaxInflight != 50 {
		t.Errorf("max_queued_messages 50 gave MaxInflight %d", l.MaxInflight)
	}
	for _, bad := range []string{"tls_version tlsv1.3", "max_packet_size x", "queue_qos0_messages true", "max_inflight_messages 3"} {
		if _, err := Directives(bad); err == nil {
			t.Errorf("Directives(%q) accepted a line mqtk's broker cannot follow", bad)
		}
	}
}

// Both brokers start, listen where Ports say, and come back on the same
// ports after Restart.
func TestStartAndRestart(t *testing.T) {
	Each(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{{}, {WebSockets: true}, {Unix: true}}}, func(t *testing.T, b *Broker) {
		dialAll := func(when string) {
			t.Helper()
			for i := range b.Ports {
				network, addr := "tcp", b.Addr(i)
				if b.Socket[i] != "" {
					network, addr = "unix", b.Socket[i]
				}
				c, err := net.Dial(network, addr)
				if err != nil {
					t.Fatalf("%s: listener %d: %v", when, i, err)
				}
				_ = c.Close()
			}
		}
		dialAll("after Start")
		before := append([]int(nil), b.Ports...)
		b.Restart()
		if !reflect.DeepEqual(b.Ports, before) {
			t.Errorf("ports %v after Restart, want %v", b.Ports, before)
		}
		dialAll("after Restart")
	})
}
