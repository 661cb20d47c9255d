package broker

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
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
	log := &syncBuf{}
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
	for _, v := range []byte{4, 5} {
		big := dialRaw(t, b.tcpAddr(t), v)
		big.connect(connectPacket(fmt.Sprintf("big%d", v), true, 30))
		big.send(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish},
			TopicName:   "big",
			Payload:     bytes.Repeat([]byte("x"), 4000),
		})
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

func TestNeverReadingClientIsDisconnected(t *testing.T) {
	log := &syncBuf{}
	b := startBroker(t, Options{Log: log, Limits: Limits{MaxQueued: 8, WriteTimeout: 500 * time.Millisecond}})
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
		if cl, ok := b.srv.Clients.Get("lazy"); !ok || cl.Closed() {
			break
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
	b := startBroker(t, Options{Limits: Limits{ConnectTimeout: 30 * time.Second, MaxPacketSize: 4096, WriteTimeout: time.Second, MaxQueued: 16}})
	addr := b.tcpAddr(t)
	connect := func(id string) []byte {
		var buf bytes.Buffer
		pk := connectPacket(id, true, 60)
		pk.ProtocolVersion = 4
		if err := pk.ConnectEncode(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	encode := func(pk packets.Packet) []byte {
		var buf bytes.Buffer
		pk.ProtocolVersion = 4
		var err error
		switch pk.FixedHeader.Type {
		case packets.Publish:
			err = pk.PublishEncode(&buf)
		case packets.Subscribe:
			err = pk.SubscribeEncode(&buf)
		}
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	oversized := encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "big", Payload: make([]byte, 8192)})
	subscribe := encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1, Filters: packets.Subscriptions{{Filter: "crowd/flood"}}})
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
					_, _ = c.Write(append(connect(fmt.Sprintf("crowd-%d", i)), oversized...))
				case 3: // subscribes, then never reads
					_, _ = c.Write(append(connect(fmt.Sprintf("crowd-%d", i)), subscribe...))
				default:
					_, _ = c.Write(connect(fmt.Sprintf("crowd-%d", i)))
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
	// The slow readers cost the broker a bounded queue each: --max-queued
	// (16) applies to them, not mochi's default of 8,192. (Here the kernel
	// buffers absorb the flood; dropping and disconnecting a reader that
	// never reads are TestFullQueueDropsOldestQoS0First's and
	// TestNeverReadingClientIsDisconnected's.)
	g, err := newQueueGauge()
	if err != nil {
		t.Fatal(err)
	}
	slowSeen, slowGone := 0, 0
	for i := 3; i < n; i += 10 {
		cl, ok := b.srv.Clients.Get(fmt.Sprintf("crowd-%d", i))
		if !ok || cl.Closed() {
			slowGone++
			continue
		}
		slowSeen++
		if q, c := g.lenCap(cl); c != 16 || q > c {
			t.Fatalf("slow reader crowd-%d holds %d of %d queued packets, want at most 16", i, q, c)
		}
	}
	t.Logf("slow readers: %d connected, %d gone; %d messages dropped; %d goroutines", slowSeen, slowGone,
		atomic.LoadInt64(&b.srv.Info.MessagesDropped), runtime.NumGoroutine())
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
	want := int64(n - n/10*4) // silent, garbage, oversized and slow readers may be gone
	waitFor(t, func() bool { return atomic.LoadInt64(&b.srv.Info.ClientsConnected) >= want })
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
