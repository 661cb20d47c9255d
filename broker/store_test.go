package broker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
)

// stopBroker closes b before the test ends (a restart on the same data
// directory), failing the test if it does not stop cleanly within 15 s.
func stopBroker(t testing.TB, b *Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// retained subscribes to filter on addr and returns the retained messages
// it is sent, as sorted "topic payload" lines: everything that arrives
// until the broker has been quiet for a second.
func retained(t *testing.T, addr, filter string) []string {
	t.Helper()
	c := dialRaw(t, addr, packet.V311)
	c.connect(connectPacket(fmt.Sprintf("retained-reader-%d", time.Now().UnixNano()), true, 30))
	c.subscribe(1, filter)
	var got []string
	for {
		pk, err := c.nextPublish(time.Second)
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("reading retained messages: %v", err)
			}
			break
		}
		if !pk.Retain {
			t.Fatalf("%s %q arrived without the retain flag", pk.Topic, pk.Payload)
		}
		got = append(got, pk.Topic+" "+string(pk.Payload))
	}
	c.c.Close()
	sort.Strings(got)
	return got
}

// mosq runs a mosquitto client against addr with a bounded lifetime and
// returns its stdout.
func mosq(t testing.TB, bin, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(bin), strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(l)
	return l
}

// leakCheck fails the test if goroutines it started outlive it. Goroutines
// that were already running (another test's connections still winding down)
// are not this test's to answer for; TestMain checks the package as a whole.
func leakCheck(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// TestStoreRestoresAcrossRestart: a graceful stop and start on the same data
// directory keeps retained messages (and a cleared one stays cleared) and
// the queued QoS 1 messages of an offline persistent session (3.1.1
// clean-session 0 and v5 session expiry), and never resurrects a clean
// session.
func TestStoreRestoresAcrossRestart(t *testing.T) {
	leakCheck(t)
	pub, sub := mosquittotest.RequireClients(t)
	dir := t.TempDir()

	b1 := startBroker(t, Options{DataDir: dir})
	addr := b1.tcpAddr(t)
	// Persistent subscribers register and go offline.
	mosq(t, sub, addr, "-V", "311", "-c", "-i", "keep311", "-q", "1", "-t", "q/#", "-E")
	mosq(t, sub, addr, "-V", "5", "-c", "-x", "3600", "-i", "keep5", "-q", "1", "-t", "q/#", "-E")
	mosq(t, sub, addr, "-V", "311", "-i", "cleanie", "-q", "1", "-t", "q/#", "-E")
	mosq(t, pub, addr, "-q", "1", "-r", "-t", "r/kept", "-m", "retained-1")
	mosq(t, pub, addr, "-q", "1", "-r", "-t", "r/cleared", "-m", "gone soon")
	mosq(t, pub, addr, "-q", "1", "-r", "-t", "r/cleared", "-n")
	for i := 1; i <= 3; i++ {
		mosq(t, pub, addr, "-q", "2", "-t", fmt.Sprintf("q/%d", i), "-m", fmt.Sprintf("queued-%d", i))
	}
	stopBroker(t, b1)

	b2 := startBroker(t, Options{DataDir: dir})
	addr2 := b2.tcpAddr(t)
	// The clean session is gone: resuming it finds no session and nothing
	// queued.
	cleanie := dialRaw(t, addr2, packet.V311)
	if ack := cleanie.connect(connectPacket("cleanie", false, 30)); ack.SessionPresent {
		t.Error("a clean session came back after the restart")
	}
	if pk, err := cleanie.nextPublish(time.Second); err == nil {
		t.Errorf("the clean session's client got %s %q after the restart", pk.Topic, pk.Payload)
	}
	cleanie.send(&packet.Disconnect{})
	want := "q/1 queued-1\nq/2 queued-2\nq/3 queued-3"
	for _, args := range [][]string{
		{"-V", "311", "-c", "-i", "keep311"},
		{"-V", "5", "-c", "-x", "3600", "-i", "keep5"},
	} {
		// No subscription given: the session's restored subscription delivers.
		out := mosq(t, sub, addr2, append(args, "-q", "1", "-t", "unrelated/x", "-v", "-C", "3", "-W", "10")...)
		if got := strings.Join(sortedLines(out), "\n"); got != want {
			t.Errorf("%v after restart got\n%s\nwant\n%s", args, got, want)
		}
	}
	if got := retained(t, addr2, "r/#"); fmt.Sprint(got) != "[r/kept retained-1]" {
		t.Errorf("retained after restart = %q, want only r/kept retained-1", got)
	}
}

// TestStoreDropsExpiredSessions: a v5 session whose expiry passed while the
// broker was down is gone after the restart, with its subscriptions and
// its queue; one whose expiry has not passed is kept with both.
func TestStoreDropsExpiredSessions(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	b1 := startBroker(t, Options{DataDir: dir})
	addr := b1.tcpAddr(t)
	session := func(id string, expiry uint32) *packet.Connect {
		cp := connectPacket(id, false, 30)
		cp.Properties.SessionExpiry = expiry
		return cp
	}
	expiries := map[string]uint32{"old": 1, "fresh": 3600}
	for _, id := range []string{"old", "fresh"} {
		c := dialRaw(t, addr, packet.V5)
		c.connect(session(id, expiries[id]))
		c.subscribe(1, "a/#", "b")
		c.send(&packet.Disconnect{})
		readUntilClosed(t, c.c, 10*time.Second)
	}
	pub := dialRaw(t, addr, packet.V5)
	pub.connect(connectPacket("store-pub", true, 30))
	pub.publish("a/x", "queued", 1, false)
	routed(t, addr, pub)
	stopBroker(t, b1)
	// old's 1 s, counted in whole seconds, passes while the broker is down.
	time.Sleep(3100 * time.Millisecond)

	b2 := startBroker(t, Options{DataDir: dir})
	addr = b2.tcpAddr(t)
	fresh := dialRaw(t, addr, packet.V5)
	if ack := fresh.connect(session("fresh", 3600)); !ack.SessionPresent {
		t.Fatal("the unexpired session is gone after the restart")
	}
	if pk, err := fresh.nextPublish(5 * time.Second); err != nil || string(pk.Payload) != "queued" {
		t.Fatalf("the unexpired session's queue: %q, %v; want queued", pk.Payload, err)
	}
	old := dialRaw(t, addr, packet.V5)
	if ack := old.connect(session("old", 1)); ack.SessionPresent {
		t.Error("the expired session is present after the restart")
	}
	pub = dialRaw(t, addr, packet.V5)
	pub.connect(connectPacket("store-pub", true, 30))
	pub.publish("b", "live", 1, false)
	routed(t, addr, pub)
	// fresh still has its subscription to b; old has none and no queue.
	if pk, err := fresh.nextPublish(5 * time.Second); err != nil || string(pk.Payload) != "live" {
		t.Errorf("the unexpired session's subscription to b: %q, %v; want live", pk.Payload, err)
	}
	if pk, err := old.nextPublish(time.Second); err == nil {
		t.Errorf("the expired session's client got %s %q", pk.Topic, pk.Payload)
	}
}

// TestStoreLockedDirectory: a second broker on the same directory gets a
// message that says what to do instead of hanging on the file lock.
func TestStoreLockedDirectory(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	startBroker(t, Options{DataDir: dir})
	second, err := New(Options{Listeners: []string{"tcp://127.0.0.1:0"}, DataDir: dir})
	if err == nil {
		// The store may be opened at Start rather than in New.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = second.Start(ctx)
		cancel()
		stopBroker(t, second)
	}
	if err == nil || !strings.Contains(err.Error(), "another running broker") {
		t.Fatalf("second broker on the directory: %v, want a locked-directory error", err)
	}
}

// storeChildEnv makes this test binary act as a broker process with a store
// (see TestStoreHelperBroker), so the kill -9 test has a process to kill.
const storeChildEnv = "MQTK_TEST_STORE_BROKER_DIR"

// TestStoreHelperBroker is not a test: it is the broker process of
// TestStoreSurvivesKill9 and only runs when the parent sets storeChildEnv.
func TestStoreHelperBroker(t *testing.T) {
	dir := os.Getenv(storeChildEnv)
	if dir == "" {
		t.Skip("helper process for TestStoreSurvivesKill9")
	}
	b := startBroker(t, Options{DataDir: dir})
	fmt.Printf("LISTENING %s\n", b.tcpAddr(t))
	// Serve until killed; the parent always kills us, the deadline is a
	// backstop so an orphan cannot live forever.
	time.Sleep(2 * time.Minute)
}

// startStoreChild starts the helper broker on dir and returns its address.
func startStoreChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreHelperBroker$", "-test.v")
	cmd.Env = append(os.Environ(), storeChildEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "LISTENING "); ok {
				addrc <- a
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case a := <-addrc:
		return cmd, a
	case <-time.After(30 * time.Second):
		t.Fatalf("helper broker did not start; stderr:\n%s", stderr.String())
	}
	return nil, ""
}

// TestStoreSurvivesKill9 is the Done-when: a broker process with a
// data directory is killed with SIGKILL and restarted on the same directory;
// retained messages and a persistent subscriber's queued QoS 1 messages are
// still there.
//
// Publishing with QoS 2 makes the test deterministic without sleeping: the
// broker stores the subscriber's copy before it acknowledges the message
// (PUBREC), and completes the flow (PUBCOMP) only after that, so once
// mosquitto_pub has its PUBCOMP the queued copy is on disk.
func TestStoreSurvivesKill9(t *testing.T) {
	pub, sub := mosquittotest.RequireClients(t)
	if testing.Short() {
		t.Skip("starts broker processes")
	}
	dir := t.TempDir()
	child, addr := startStoreChild(t, dir)
	mosq(t, sub, addr, "-V", "311", "-c", "-i", "durable", "-q", "1", "-t", "jobs/#", "-E")
	mosq(t, pub, addr, "-q", "2", "-r", "-t", "state/door", "-m", "open")
	for i := 1; i <= 3; i++ {
		mosq(t, pub, addr, "-q", "2", "-t", fmt.Sprintf("jobs/%d", i), "-m", fmt.Sprintf("job-%d", i))
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := child.Wait()
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper broker did not die by SIGKILL: %v", err)
	}

	_, addr2 := startStoreChild(t, dir)
	out := mosq(t, sub, addr2, "-V", "311", "-c", "-i", "durable", "-q", "1", "-t", "jobs/#", "-v", "-C", "3", "-W", "10")
	if got, want := strings.Join(sortedLines(out), "\n"), "jobs/1 job-1\njobs/2 job-2\njobs/3 job-3"; got != want {
		t.Errorf("queued messages after kill -9:\n%s\nwant\n%s", got, want)
	}
	out = mosq(t, sub, addr2, "-t", "state/#", "-v", "-C", "1", "-W", "10")
	if strings.TrimSpace(out) != "state/door open" {
		t.Errorf("retained after kill -9 = %q, want state/door open", out)
	}
}

// TestSysTopicsDelivered: $SYS/# reaches subscribers, as retained
// messages from the start (a subscriber need not wait for the next
// update), and $SYS/broker/version names a version.
func TestSysTopicsDelivered(t *testing.T) {
	leakCheck(t)
	_, sub := mosquittotest.RequireClients(t)
	b := startBroker(t, Options{})
	addr := b.tcpAddr(t)
	out := mosq(t, sub, addr, "-t", "$SYS/#", "-v", "-C", "5", "-W", "10")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d $SYS messages, want 5:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "$SYS/broker/") {
			t.Errorf("unexpected $SYS line %q", l)
		}
	}
	// Which version is the broker's business (the engine's own, today);
	// that there is one is the subscriber's.
	out = mosq(t, sub, addr, "-t", "$SYS/broker/version", "-C", "1", "-W", "10")
	if v := strings.TrimSpace(out); v == "" || strings.Contains(v, "\n") {
		t.Errorf("$SYS/broker/version = %q, want one version", out)
	}
}

// TestStoreDropsExpiredRetained: a retained MQTT 5 message whose expiry
// passed while the broker was down is not restored [MQTT-3.3.2-5], and
// stays gone after a second restart; one within its expiry and one
// without an expiry are kept.
func TestStoreDropsExpiredRetained(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	b1 := startBroker(t, Options{DataDir: dir})
	pub := dialRaw(t, b1.tcpAddr(t), packet.V5)
	pub.connect(connectPacket("retainer", true, 30))
	for _, m := range []struct {
		topic  string
		expiry uint32
	}{{"expired", 1}, {"fresh", 3600}, {"forever", 0}} {
		pk := &packet.Publish{QoS: 1, PacketID: 7, Retain: true, Topic: m.topic, Payload: []byte("v")}
		pk.Properties.MessageExpiry = m.expiry
		pub.send(pk)
		if ack := pub.recv(); typeOf(ack) != packet.TypePuback || reasonOf(ack) >= 0x80 {
			t.Fatalf("publish %s: got %s", m.topic, pub.describe(ack))
		}
	}
	stopBroker(t, b1)
	// The 1 s expiry, counted in whole seconds, passes while the broker is
	// down.
	time.Sleep(3100 * time.Millisecond)
	for round := 0; round < 2; round++ { // the second start shows the deletion stuck
		b := startBroker(t, Options{DataDir: dir})
		if got := retained(t, b.tcpAddr(t), "#"); fmt.Sprint(got) != "[forever v fresh v]" {
			t.Fatalf("round %d: restored %q, want forever and fresh", round, got)
		}
		stopBroker(t, b)
	}
}

// ackAll reads from q until its connection ends, acknowledging QoS 1
// publishes.
func (q *quietClient) ackAll() {
	for {
		p, err := q.r.ReadPacket(q.v)
		if err != nil {
			return
		}
		if pk, ok := p.(*packet.Publish); ok && pk.QoS == 1 {
			if q.send(&packet.Ack{Kind: packet.TypePuback, PacketID: pk.PacketID}) != nil {
				return
			}
		}
	}
}

// BenchmarkStoreQosPublish measures a QoS 1 publish to an online
// persistent subscriber with a data directory, the subscriber's copy
// stored (a synced write) before the PUBACK: from one publisher, and from
// many at once (where group commit can share the fsync).
func BenchmarkStoreQosPublish(b *testing.B) {
	br := startBroker(b, Options{DataDir: b.TempDir()})
	addr := br.tcpAddr(b)
	sub, err := dialQuiet(addr, packet.V311, connectPacket("bench-sub", false, 0))
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "bench/#", QoS: 1}}}); err != nil {
		b.Fatal(err)
	}
	if p, err := sub.recv(); err != nil || typeOf(p) != packet.TypeSuback {
		b.Fatalf("SUBACK: %v, %v", p, err)
	}
	_ = sub.c.SetDeadline(time.Time{})
	acking := make(chan struct{})
	go func() { defer close(acking); sub.ackAll() }()
	b.Cleanup(func() { sub.c.Close(); <-acking })
	payload := bytes.Repeat([]byte("p"), 100)
	var ids atomic.Uint32
	publisher := func() (*quietClient, error) {
		return dialQuiet(addr, packet.V311, connectPacket(fmt.Sprintf("bench-pub-%d", ids.Add(1)), true, 0))
	}
	b.Run("serial", func(b *testing.B) {
		pub, err := publisher()
		if err != nil {
			b.Fatal(err)
		}
		defer pub.c.Close()
		for i := 0; b.Loop(); i++ {
			if err := pub.publish1("bench/topic", payload, false, uint16(i%65535+1)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			pub, err := publisher()
			if err != nil {
				b.Error(err)
				return
			}
			defer pub.c.Close()
			for i := 0; pb.Next(); i++ {
				if err := pub.publish1("bench/topic", payload, false, uint16(i%65535+1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// TestStoreCloseWhileWriting: a broker closed while its clients keep
// publishing retained messages stops within its deadline, without a
// panic, and every retained message acknowledged before Close began is
// there after a restart on the same directory.
func TestStoreCloseWhileWriting(t *testing.T) {
	leakCheck(t)
	const writers, each = 8, 200
	dir := t.TempDir()
	log := &ui.SyncBuffer{}
	b := startBroker(t, Options{DataDir: dir, Log: log})
	addr := b.tcpAddr(t)
	clients := make([]*quietClient, writers)
	for g := range clients {
		q, err := dialQuiet(addr, packet.V311, connectPacket(fmt.Sprintf("writer-%d", g), true, 30))
		if err != nil {
			t.Fatal(err)
		}
		clients[g] = q
		defer q.c.Close()
	}
	var acked [writers]atomic.Int32
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for g, q := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g == 0 {
				defer once.Do(func() { close(started) })
			}
			for i := range each {
				if g == 0 && i == 20 {
					once.Do(func() { close(started) })
				}
				if err := q.publish1(fmt.Sprintf("t/%d/%d", g, i), []byte("v"), true, uint16(i+1)); err != nil {
					return // the broker closed the connection
				}
				acked[g].Store(int32(i + 1))
			}
		}()
	}
	<-started
	var before [writers]int32
	for g := range acked {
		before[g] = acked[g].Load()
	}
	if before[0] < 20 {
		t.Fatalf("writer 0 stopped after %d messages", before[0])
	}
	stopBroker(t, b)
	for _, q := range clients {
		q.c.Close()
	}
	wg.Wait()
	if l := log.String(); strings.Contains(l, "panic") {
		t.Errorf("broker log: %s", l)
	}

	b2 := startBroker(t, Options{DataDir: dir})
	have := map[string]bool{}
	for _, l := range retained(t, b2.tcpAddr(t), "t/#") {
		have[strings.TrimSuffix(l, " v")] = true
	}
	for g, n := range before {
		for i := range int(n) {
			if topic := fmt.Sprintf("t/%d/%d", g, i); !have[topic] {
				t.Errorf("%s was acknowledged before Close but is not retained after the restart (%d of %d present)", topic, len(have), n)
			}
		}
	}
}
