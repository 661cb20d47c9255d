package pub

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker/brokertest"
	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mosquittotest"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/ui"
)

// TestLineModeSurvivesBrokerRestart pipes 10,000 lines into -l -q 1 and
// restarts the broker (persistence on: mosquitto's persistence file,
// mqtk's bbolt data directory) halfway, against each broker. A persistent
// subscriber session must see every line, first occurrences in order; QoS
// 1 allows duplicates, which are accounted for below.
//
// The stop is clean: SIGTERM for mosquitto, Close for mqtk's broker (which
// also tells MQTT 5 clients with DISCONNECT 0x8B), so that the broker saves
// its state first. With SIGKILL mosquitto comes back from its last
// autosave, and it acknowledges a PUBLISH before saving it; a crash can
// then lose a message the publisher was told was delivered (in a trial of
// 14 SIGKILL runs, one line went missing, and the broker had sent PUBACK
// for it), which no client can detect, so that variant would test
// mosquitto's durability, not pub. (mqtk's broker runs in the test's
// process and cannot be killed apart from it; its crash durability is
// tested in package broker, kill_test.go and durability_test.go.)
func TestLineModeSurvivesBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a broker")
	}
	py := requirePython(t)
	for _, name := range brokertest.Names() {
		t.Run(name, func(t *testing.T) {
			b := brokertest.Start(t, name, restartOptions())
			for _, v := range []mqttconn.Version{mqttconn.V5, mqttconn.V311} {
				t.Run(v.String(), func(t *testing.T) { lineModeRestart(t, b, py, v) })
			}
		})
	}
}

// restartOptions keeps every line for the subscriber while it is offline
// (from the restart until it has reconnected, a second later, while pub
// goes on publishing), which neither broker does by default: both keep
// 1000 QoS 1 messages for an offline session and drop the rest, as they
// may. max_queued_messages 0 lifts mosquitto's bound, and brokertest
// raises mqtk's to the largest there is.
func restartOptions() mosquittotest.Options {
	return mosquittotest.Options{Persistence: true, Global: "max_queued_messages 0\n"}
}

// dupProbe is a persistent-session QoS 1 subscriber in Python paho (a
// client independent of ours) that prints "DUP PAYLOAD" per message. The
// DUP flag tells the two sources of duplicates apart: the broker sets it
// when it delivers a message to this subscriber again, and never passes on
// the publisher's own DUP flag, so a duplicate arriving without DUP is one
// the publisher sent twice. It prints "ready" once subscribed, and
// reconnects by itself after the broker restarts. Arguments: port, client
// id, topic.
const dupProbe = `
import sys
import paho.mqtt.client as mqtt
port, cid, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = mqtt.Client(client_id=cid, clean_session=False, protocol=mqtt.MQTTv311)
c.reconnect_delay_set(min_delay=1, max_delay=1)
def on_connect(c, u, f, rc):
    c.subscribe(topic, 1)
def on_subscribe(c, u, mid, q):
    sys.stdout.write("ready\n"); sys.stdout.flush()
def on_message(c, u, m):
    sys.stdout.write("%d %s\n" % (m.dup, m.payload.decode())); sys.stdout.flush()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", port, keepalive=5)
c.loop_forever(retry_first_connection=True)
`

type delivery struct {
	n   int
	dup bool
}

// lineModeRestart runs one stream through a restart of b. Each version
// has a topic of its own: the subscriber session of an earlier run
// outlives its process on the broker, and must not collect this run's
// lines.
func lineModeRestart(t *testing.T, b *brokertest.Broker, py string, v mqttconn.Version) {
	const total = 10000
	id := fmt.Sprintf("restart-probe-%d", time.Now().UnixNano())
	topic := fmt.Sprintf("stream/%d", v)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub := exec.CommandContext(ctx, py, "-c", dupProbe, strconv.Itoa(b.Port()), id, topic)
	sub.Stderr = os.Stderr
	subOut, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })

	// Read what the subscriber gets until the last line has arrived.
	var received []delivery
	ready := make(chan struct{})
	var subscribed sync.Once // "ready" comes again after each reconnect
	readDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(subOut)
		for sc.Scan() {
			if sc.Text() == "ready" {
				subscribed.Do(func() { close(ready) })
				continue
			}
			var d delivery
			var dup int
			if _, err := fmt.Sscanf(sc.Text(), "%d %d", &dup, &d.n); err != nil {
				readDone <- fmt.Errorf("unexpected subscriber line %q", sc.Text())
				return
			}
			d.dup = dup == 1
			received = append(received, d)
			if d.n == total {
				readDone <- nil
				return
			}
		}
		readDone <- fmt.Errorf("subscriber output ended after %d messages: %v", len(received), sc.Err())
	}()
	select {
	case <-ready:
	case err := <-readDone:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the Python subscriber did not subscribe within 30s")
	}

	pr, pw := io.Pipe()
	streams, _, errb := ui.Test(pr)
	o := &Options{Conn: tcpConfig(t, b, v), Dial: mqttconn.Dial, IO: streams, In: pr,
		Source: source.Lines, Topic: topic, QoS: 1, ReconnectTimeout: time.Minute}
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, o) }()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer pw.Close()
		w := bufio.NewWriter(pw)
		for i := 1; i <= total; i++ {
			fmt.Fprintf(w, "%d\n", i)
			if i == total/2 {
				// The pipe hands lines over only as Run reads them, so the
				// restart lands in the middle of the stream.
				if err := w.Flush(); err != nil {
					return
				}
				b.Restart()
			}
		}
		_ = w.Flush()
	}()
	wg.Wait()

	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v\nstderr:\n%s", err, errb.String())
	}
	stderr := errb.String()
	if !strings.Contains(stderr, "connection lost") || !strings.Contains(stderr, "reconnected") {
		t.Errorf("the restart did not interrupt the stream; stderr:\n%s", stderr)
	}
	var resent int
	summary := ""
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "sent ") && strings.Contains(l, "acked") {
			summary = l
			fmt.Sscanf(l[strings.Index(l, "(")+1:], "%d", &resent)
		}
	}
	if !strings.HasPrefix(summary, fmt.Sprintf("mqtk: sent %d, acked %d, failed 0", total, total)) {
		t.Errorf("summary %q, want sent %d, acked %d, failed 0", summary, total, total)
	}

	select {
	case err := <-readDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatalf("subscriber got %d messages before the deadline", len(received))
	}
	seen := make(map[int]bool, total)
	var firsts, pubDups, brokerDups []int
	for _, d := range received {
		if seen[d.n] {
			if d.dup {
				brokerDups = append(brokerDups, d.n)
			} else {
				pubDups = append(pubDups, d.n)
			}
			continue
		}
		seen[d.n] = true
		firsts = append(firsts, d.n)
	}
	if len(firsts) != total {
		t.Fatalf("%d distinct lines arrived, want %d", len(firsts), total)
	}
	for i, n := range firsts {
		if n != i+1 {
			t.Fatalf("first occurrences out of order at %d: got line %d", i, n)
		}
	}
	// Duplicates without the DUP flag are lines this publisher sent twice:
	// only the ones it resent after reconnecting may be among them. The
	// broker's own redeliveries (DUP set) are allowed at QoS 1 and depend
	// on the broker, not on pub.
	if len(pubDups) > resent {
		t.Errorf("%d lines arrived twice from the publisher, more than the %d it resent: %s\nstderr:\n%s",
			len(pubDups), resent, ranges(pubDups), stderr)
	}
	t.Logf("%d lines, %d resent after the restart; duplicates at the subscriber: %d from the publisher, %d redelivered by the broker (%s)",
		total, resent, len(pubDups), len(brokerDups), ranges(brokerDups))
}

// TestLineModeStopsOnCancel: Ctrl-C while stdin is still open ends the
// run at once with a summary, instead of waiting for input forever.
func TestLineModeStopsOnCancel(t *testing.T) {
	brokertest.Each(t, mosquittotest.Options{}, lineModeStopsOnCancel)
}

func lineModeStopsOnCancel(t *testing.T, b *brokertest.Broker) {
	pr, pw := io.Pipe()
	defer pw.Close()
	streams, _, errb := ui.Test(pr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &Options{Conn: tcpConfig(t, b, mqttconn.V5), Dial: mqttconn.Dial, IO: streams, In: pr,
		Source: source.Lines, Topic: "cancel", QoS: 1}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	if _, err := io.WriteString(pw, "one\n"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if clierr.KindOf(err) != clierr.KindInterrupted {
			t.Fatalf("Run after cancel: %v (kind %v), want KindInterrupted", err, clierr.KindOf(err))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if !strings.Contains(errb.String(), "mqtk: sent ") {
		t.Errorf("no summary after cancel: %q", errb.String())
	}
	pw.Close() // lets the stdin reader goroutine finish for goleak
}

// ranges renders sorted-ish integers as "a-b" runs, to read a failure.
func ranges(ns []int) string {
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		if i == j {
			fmt.Fprintf(&b, "%d", ns[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", ns[i], ns[j])
		}
		i = j + 1
	}
	return b.String()
}

func requirePython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3" // Debian's, which has python3-paho-mqtt
	if out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import paho: python3-paho-mqtt is not installed (apt-get install python3-paho-mqtt; %v: %s); .ci/run installs it", py, err, out)
	}
	return py
}
