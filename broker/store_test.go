package broker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
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

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// allowAll lets every client in: these tests are about the ops hooks, not
// authentication (broker-core's tests cover that).
type allowAll struct{ mqtt.HookBase }

func (allowAll) ID() string { return "test-allow-all" }
func (allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

// startMochi runs a real mochi server with hooks on a free loopback port and
// stops it when the test ends. It returns the server, "host:port" and a stop
// function that may be called early.
func startMochi(t testing.TB, hooks ...mqtt.Hook) (*mqtt.Server, string, func()) {
	t.Helper()
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0 // keep retained messages (mochi's 24 h default purges them)
	srv := mqtt.New(&mqtt.Options{
		InlineClient:           true,
		Capabilities:           caps,
		SysTopicResendInterval: 1,
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	for _, h := range append([]mqtt.Hook{&allowAll{}}, hooks...) {
		if err := srv.AddHook(h, nil); err != nil {
			t.Fatalf("add hook %s: %v", h.ID(), err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t1", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	// mochi's Close panics when called twice.
	var once sync.Once
	stop := func() { once.Do(func() { _ = srv.Close() }) }
	t.Cleanup(stop)
	return srv, ln.Addr().String(), stop
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
// directory keeps retained messages and the queued QoS 1 messages of an
// offline persistent session (3.1.1 clean-session 0 and v5 session expiry),
// and never resurrects a clean session.
func TestStoreRestoresAcrossRestart(t *testing.T) {
	leakCheck(t)
	pub, sub := mosquittotest.RequireClients(t)
	dir := t.TempDir()

	st, err := newStoreHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, addr, stop := startMochi(t, st)
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
	stop()
	if err := st.Close(); err != nil { // already closed by srv.Close via Stop; must be idempotent
		t.Fatal(err)
	}

	// The store itself, read back before any server touches it.
	st2, err := newStoreHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := st2.StoredClients()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range clients {
		ids = append(ids, c.ID)
	}
	sort.Strings(ids)
	if got := strings.Join(ids, ","); got != "keep311,keep5" {
		t.Fatalf("stored sessions = %q, want keep311,keep5 (clean sessions are never stored)", got)
	}
	infl, err := st2.StoredInflightMessages()
	if err != nil {
		t.Fatal(err)
	}
	if len(infl) != 6 {
		t.Fatalf("stored queued messages = %d, want 6 (3 per persistent session)", len(infl))
	}
	ret, err := st2.StoredRetainedMessages()
	if err != nil {
		t.Fatal(err)
	}
	if len(ret) != 1 || ret[0].TopicName != "r/kept" || string(ret[0].Payload) != "retained-1" {
		t.Fatalf("stored retained = %+v, want only r/kept", ret)
	}

	_, addr2, _ := startMochi(t, st2)
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
	out := mosq(t, sub, addr2, "-t", "r/#", "-v", "-C", "1", "-W", "10")
	if strings.TrimSpace(out) != "r/kept retained-1" {
		t.Errorf("retained after restart = %q, want r/kept retained-1", out)
	}
}

// TestStoreDropsExpiredSessions: a v5 session whose expiry passed while the
// broker was down is removed at start with its subscriptions and queue.
func TestStoreDropsExpiredSessions(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	st, err := newStoreHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := storedClient{Disconnected: time.Now().Add(-time.Hour).Unix()}
	rec.ID, rec.ProtocolVersion = "old", 5
	rec.Properties.SessionExpiryInterval, rec.Properties.SessionExpiryIntervalFlag = 60, true
	live := storedClient{Disconnected: time.Now().Unix()}
	live.ID, live.ProtocolVersion = "fresh", 5
	live.Properties.SessionExpiryInterval, live.Properties.SessionExpiryIntervalFlag = 3600, true
	for _, c := range []storedClient{rec, live} {
		st.write("test", func(tx *bolt.Tx) error { return putJSON(tx, bucketClients, []byte(c.ID), c) })
		for _, f := range []string{"a/#", "b"} {
			st.write("test", func(tx *bolt.Tx) error {
				return putJSON(tx, bucketSubs, subKey(c.ID, f), map[string]any{"client": c.ID, "filter": f, "qos": 1})
			})
		}
	}
	if err := st.flush(); err != nil {
		t.Fatal(err)
	}
	clients, err := st.StoredClients()
	if err != nil {
		t.Fatal(err)
	}
	if len(clients) != 1 || clients[0].ID != "fresh" {
		t.Fatalf("clients = %+v, want only fresh", clients)
	}
	subs, err := st.StoredSubscriptions()
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 || subs[0].Client != "fresh" || subs[1].Client != "fresh" {
		t.Fatalf("subscriptions = %+v, want fresh's two", subs)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Writes after Close are dropped quietly, not a panic or a hang.
	st.OnRetainedExpired("x")
}

// TestStoreLockedDirectory: a second broker on the same directory gets a
// message that says what to do instead of hanging on the file lock.
func TestStoreLockedDirectory(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	st, err := newStoreHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = newStoreHook(dir)
	if err == nil || !strings.Contains(err.Error(), "another running broker") {
		t.Fatalf("second open: %v, want a locked-directory error", err)
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
	st, err := newStoreHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, addr, _ := startMochi(t, st)
	fmt.Printf("LISTENING %s\n", addr)
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
// Publishing with QoS 2 makes the test deterministic without sleeping: mochi
// delivers (and our hook stores, synchronously) a QoS 2 message before it
// reads the PUBREL, so once mosquitto_pub has its PUBCOMP the queued copy is
// on disk.
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

// TestSysTopicsDelivered: $SYS/# reaches subscribers (mochi publishes them
// as retained messages at start and every SysTopicResendInterval).
func TestSysTopicsDelivered(t *testing.T) {
	leakCheck(t)
	_, sub := mosquittotest.RequireClients(t)
	_, addr, _ := startMochi(t)
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
	out = mosq(t, sub, addr, "-t", "$SYS/broker/version", "-C", "1", "-W", "10")
	if strings.TrimSpace(out) != mqtt.Version {
		t.Errorf("$SYS/broker/version = %q, want %q", out, mqtt.Version)
	}
}

// TestStoreDropsExpiredRetained: a retained MQTT 5 message whose expiry
// passed while the broker was down is not restored [MQTT-3.3.2-5]; one
// without expiry is kept however old it is.
func TestStoreDropsExpiredRetained(t *testing.T) {
	leakCheck(t)
	st, err := newStoreHook(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old := time.Now().Add(-time.Hour).Unix()
	for _, m := range []storage.Message{
		{TopicName: "expired", Payload: []byte("x"), Created: old, Properties: storage.MessageProperties{MessageExpiryInterval: 60}},
		{TopicName: "fresh", Payload: []byte("y"), Created: time.Now().Unix(), Properties: storage.MessageProperties{MessageExpiryInterval: 3600}},
		{TopicName: "forever", Payload: []byte("z"), Created: old},
	} {
		st.write("test", func(tx *bolt.Tx) error { return putJSON(tx, bucketRetained, []byte(m.TopicName), m) })
	}
	if err := st.flush(); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ { // the second read shows the deletion stuck
		got, err := st.StoredRetainedMessages()
		if err != nil {
			t.Fatal(err)
		}
		var topics []string
		for _, m := range got {
			topics = append(topics, m.TopicName)
		}
		sort.Strings(topics)
		if strings.Join(topics, ",") != "forever,fresh" {
			t.Fatalf("round %d: restored %v, want forever,fresh", round, topics)
		}
	}
}

// BenchmarkStoreQosPublish measures queuing a QoS 1 message for an offline
// persistent session (one synced write), from one publisher and from many at
// once (where group commit shares the fsync).
func BenchmarkStoreQosPublish(b *testing.B) {
	st, err := newStoreHook(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	cl := srv.NewClient(nil, "bench", "bench-client", false)
	cl.Properties.ProtocolVersion = 4 // 3.1.1, clean session 0: persistent
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "bench/topic",
		Payload:     bytes.Repeat([]byte("p"), 100),
		Created:     time.Now().Unix(),
	}
	b.Run("serial", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			pk.PacketID = uint16(i)
			st.OnQosPublish(cl, pk, 0, 0)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(16)
		var n atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			p := pk
			for pb.Next() {
				p.PacketID = uint16(n.Add(1))
				st.OnQosPublish(cl, p, 0, 0)
			}
		})
	})
}

// TestStoreCloseWhileWriting: hook calls racing Close (a client goroutine
// still winding down while the server stops) neither panic nor hang, and
// every write that returned before Close is on disk.
func TestStoreCloseWhileWriting(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	st, err := newStoreHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	started := make(chan struct{})
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if g == 0 && i == 20 {
					close(started)
				}
				st.OnRetainMessage(nil, packets.Packet{TopicName: fmt.Sprintf("t/%d/%d", g, i), Payload: []byte("v")}, 1)
			}
		}()
	}
	<-started
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	st2, err := newStoreHook(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	ret, err := st2.StoredRetainedMessages()
	if err != nil {
		t.Fatal(err)
	}
	if len(ret) < 20 {
		t.Fatalf("only %d retained messages on disk; the first 20 of goroutine 0 returned before Close", len(ret))
	}
}
