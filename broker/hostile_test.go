package broker

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
)

// goodClientWorks checks a well-behaved client can still subscribe and
// receive, which is what every hostile-input test must leave intact.
func goodClientWorks(t *testing.T, addr, id string) {
	t.Helper()
	sub := dialRaw(t, addr, 5)
	sub.connect(connectPacket(id+"-sub", true, 30))
	sub.subscribe(1, "good/"+id)
	pub := dialRaw(t, addr, 4)
	pub.connect(connectPacket(id+"-pub", true, 30))
	pub.publish("good/"+id, "still here", 1, false)
	pk, err := sub.nextPublish(10 * time.Second)
	if err != nil || string(pk.Payload) != "still here" {
		t.Fatalf("well-behaved client got nothing: %v", err)
	}
	sub.c.Close()
	pub.c.Close()
}

// readUntilClosed reads until the broker closes the connection.
func readUntilClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	if err != nil && isTimeout(err) {
		t.Fatalf("broker did not close the connection within %s", within)
	}
}

func TestSilentSocketDroppedAfterConnectTimeout(t *testing.T) {
	log := &ui.SyncBuffer{}
	b := startBroker(t, Options{Log: log, Limits: Limits{ConnectTimeout: 300 * time.Millisecond}})
	c, err := net.Dial("tcp", b.tcpAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	goodClientWorks(t, b.tcpAddr(t), "silent")
	readUntilClosed(t, c, 10*time.Second)
	waitFor(t, func() bool { return strings.Contains(log.String(), "no CONNECT within") })
	if n := strings.Count(log.String(), "connection dropped"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, log)
	}
}

func TestOversizedPacketDisconnectsOnlySender(t *testing.T) {
	b := startBroker(t, Options{Limits: Limits{MaxPacketSize: 1024}})
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		big := dialRaw(t, b.tcpAddr(t), v)
		big.connect(connectPacket(fmt.Sprintf("big%d", v), true, 30))
		big.send(&packet.Publish{Topic: "big", Payload: bytes.Repeat([]byte("x"), 4000)})
		readUntilClosed(t, big.c, 10*time.Second)
	}
	// A hostile length field announcing 256 MB is refused before any
	// allocation of that size.
	c, err := net.Dial("tcp", b.tcpAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	readUntilClosed(t, c, 10*time.Second)
	goodClientWorks(t, b.tcpAddr(t), "oversized")
}

// A client that stops reading for longer than --write-timeout is
// disconnected, and said so in the log; the others carry on.
func TestNeverReadingClientIsDisconnected(t *testing.T) {
	log := &ui.SyncBuffer{}
	b := startBroker(t, Options{Log: log, HTTPAddr: "127.0.0.1:0", Limits: Limits{MaxQueued: 8, WriteTimeout: 500 * time.Millisecond}})
	addr := b.tcpAddr(t)
	lazy := dialSmallWindow(t, addr)
	lazy.connect(connectPacket("lazy", true, 30))
	lazy.subscribe(1, "flood")
	// From here on lazy never reads.
	pub := dialRaw(t, addr, 4)
	pub.connect(connectPacket("flooder", true, 30))
	payload := strings.Repeat("p", 16<<10)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		if i%16 == 0 {
			if c, ok := sessions(t, b)["lazy"]; !ok || !c.Connected {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never-reading client still connected after %d messages", i)
		}
		pub.publish("flood", payload, 0, false)
		if i%64 == 63 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(t, func() bool { return strings.Contains(log.String(), "not reading") })
	goodClientWorks(t, addr, "slow-reader")
}

// Thousands of connections at once (some silent, some sending garbage or
// oversized packets, some subscribed but never reading under a flood, most
// proper) while a well-behaved client keeps working.
func TestThousandsOfConnections(t *testing.T) {
	// The race detector allows 8,128 live goroutines and the broker needs
	// two per connection; 5,000 under -race peaked at 8,010 (it passed, in
	// 2.6 s and 760 MB, but 118 goroutines from dying), so -race runs
	// 4,000 and .ci/run runs the 5,000 without -race.
	n := 5000
	if raceEnabled {
		n = 4000
	}
	if testing.Short() {
		n = 500
	}
	raiseFileLimit(t, uint64(3*n+1000))
	b := startBroker(t, Options{HTTPAddr: "127.0.0.1:0", Limits: Limits{ConnectTimeout: 30 * time.Second, MaxPacketSize: 4096, WriteTimeout: time.Second, MaxQueued: 16}})
	addr := b.tcpAddr(t)
	// Encoded up front: the workers below must not call t.Fatal.
	encode := func(pk packet.Packet) []byte {
		enc, err := packet.Encode(pk, packet.V311)
		if err != nil {
			t.Fatal(err)
		}
		return enc
	}
	connects := make([][]byte, n)
	for i := range connects {
		connects[i] = encode(connectPacket(fmt.Sprintf("crowd-%d", i), true, 60))
	}
	oversized := encode(&packet.Publish{Topic: "big", Payload: make([]byte, 8192)})
	subscribe := encode(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "crowd/flood"}}})
	conns := make([]net.Conn, n)
	var mu sync.Mutex
	var failures []error
	var wg sync.WaitGroup
	const workers = 50
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := net.DialTimeout("tcp", addr, 20*time.Second)
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					continue
				}
				conns[i] = c
				switch i % 10 {
				case 0: // silent
				case 1: // garbage
					_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
				case 2: // oversized packet after a proper CONNECT
					_, _ = c.Write(slices.Concat(connects[i], oversized))
				case 3: // subscribes, then never reads
					_, _ = c.Write(slices.Concat(connects[i], subscribe))
				default:
					_, _ = c.Write(connects[i])
				}
			}
		}(w)
	}
	goodClientWorks(t, addr, "during")
	wg.Wait()
	flooder := dialRaw(t, addr, 4)
	flooder.connect(connectPacket("flooder", true, 30))
	for i := 0; i < 300; i++ {
		flooder.publish("crowd/flood", strings.Repeat("f", 2000), 0, false)
	}
	goodClientWorks(t, addr, "flood")
	// The slow readers may still be connected or already dropped; what
	// they cost while they stay (a queue bounded by --max-queued) is not
	// visible from outside. Dropping and disconnecting a reader that never
	// reads are TestFullQueueDropsOldestQoS0First's and
	// TestNeverReadingClientIsDisconnected's.
	all := sessions(t, b)
	slowSeen, slowGone := 0, 0
	for i := 3; i < n; i += 10 {
		if c, ok := all[fmt.Sprintf("crowd-%d", i)]; ok && c.Connected {
			slowSeen++
		} else {
			slowGone++
		}
	}
	t.Logf("slow readers: %d connected, %d gone; %v messages dropped; %d goroutines", slowSeen, slowGone,
		dropped(t, b), runtime.NumGoroutine())
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if len(failures) > 0 {
		t.Fatalf("%d of %d connections failed, first: %v", len(failures), n, failures[0])
	}
	want := float64(n - n/10*4) // silent, garbage, oversized and slow readers may be gone
	waitFor(t, func() bool { return scrape(t, b)["mqtk_broker_clients_connected"] >= want })
	goodClientWorks(t, addr, "after")
}

func raiseFileLimit(t *testing.T, want uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	old := lim
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise RLIMIT_NOFILE: %v", err)
	}
	if lim.Cur < want {
		t.Fatalf("RLIMIT_NOFILE hard limit %d is below the %d this test needs", lim.Max, want)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}
