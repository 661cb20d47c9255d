package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker/boltstore"
	"github.com/mqtk/mqtk/internal/packet"
	"github.com/mqtk/mqtk/internal/ui"
	bolt "go.etcd.io/bbolt"
)

// The durability cases of the engine issue ("Why — Durability"), each
// tried as the reporter tried it: a broker killed with SIGKILL in
// the middle of a QoS 1 stream, a store on a disk that fills up, and a
// store file that is damaged before the broker starts.

// TestKill9LosesNoAcknowledgedMessage: `mqtk broker --data DIR` is killed
// with SIGKILL while a publisher has up to 100 QoS 1 messages in flight to
// an offline persistent subscriber; after a restart on the same directory
// the subscriber receives every message whose PUBACK the publisher got.
// Messages that were in flight and never acknowledged may arrive or not
// (the broker may have stored a copy before it died); none may be lost
// once acknowledged, because a PUBACK says the copy is on disk.
func TestKill9LosesNoAcknowledgedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the mqtk binary")
	}
	const (
		total  = 10000 // the number
		window = 100   // unacknowledged publishes at once
		subID  = "k9-durable"
	)
	bin := mqtkBinary(t)
	data := t.TempDir()
	// --max-inflight bounds what the broker keeps per client: all 10,000
	// must fit in the offline subscriber's queue.
	args := []string{"--data", data, "--max-inflight", "20000"}
	b1 := startMqtkBroker(t, bin, args...)

	sub := dialRaw(t, b1.addr, packet.V311)
	sub.connect(connectPacket(subID, false, 30))
	if codes := sub.subscribe(1, "k9/#"); len(codes) != 1 || codes[0] != 1 {
		t.Fatalf("SUBACK %v, want [1]", codes)
	}
	sub.send(&packet.Disconnect{})
	readUntilClosed(t, sub.c, 10*time.Second)

	pub, err := dialQuiet(b1.addr, packet.V311, connectPacket("k9-publisher", true, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.c.Close()
	payload := func(i int) string { return fmt.Sprintf("k9-%05d", i) }

	// acked[i] is set when the PUBACK for message i (packet id i+1) has
	// been read: from then on the broker answers for it.
	var (
		acked    [total]atomic.Bool
		nAcked   atomic.Int32
		sent     atomic.Int32
		halfway  = make(chan struct{})
		readDone = make(chan error, 1)
		slots    = make(chan struct{}, window)
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	start := time.Now()
	wg.Add(2)
	go func() { // the writer: keeps up to window publishes unacknowledged
		defer wg.Done()
		for i := range total {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			pk := &packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "k9/stream", Payload: []byte(payload(i))}
			if pub.send(pk) != nil {
				return
			}
			sent.Add(1)
		}
	}()
	go func() { // the reader: records every PUBACK until the connection dies
		defer wg.Done()
		var once sync.Once
		_ = pub.c.SetReadDeadline(time.Now().Add(90 * time.Second))
		for {
			p, err := pub.r.ReadPacket(pub.v)
			if err != nil {
				readDone <- err
				return
			}
			ack, ok := p.(*packet.Ack)
			if !ok || ack.Kind != packet.TypePuback || ack.PacketID == 0 || int(ack.PacketID) > total {
				readDone <- fmt.Errorf("unexpected packet %s", packet.Describe(p, pub.v))
				return
			}
			if acked[ack.PacketID-1].Swap(true) {
				readDone <- fmt.Errorf("a second PUBACK for packet id %d", ack.PacketID)
				return
			}
			if nAcked.Add(1) >= total/2 {
				once.Do(func() { close(halfway) })
			}
			<-slots
		}
	}()
	select {
	case <-halfway:
	case err := <-readDone:
		t.Fatalf("publisher's connection ended after %d PUBACKs, before the kill: %v\nbroker log:\n%s", nAcked.Load(), err, b1.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d of %d publishes acknowledged within 60s", nAcked.Load(), total)
	}
	sentAtKill, ackedAtKill := sent.Load(), nAcked.Load()
	if err := b1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if ws := b1.wait(t); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("broker did not die by SIGKILL: %v", ws)
	}
	// PUBACKs the broker wrote before it died still count: the reader keeps
	// recording until it sees the connection end.
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher's connection outlived the broker")
	}
	close(stop)
	pub.c.Close()
	wg.Wait()
	publishTime := time.Since(start)
	if sentAtKill >= total {
		t.Fatalf("all %d publishes were sent before the kill: nothing was in flight", total)
	}
	t.Logf("killed after %v: %d sent, %d acknowledged at the kill signal, %d acknowledged in all (%.0f acknowledged msg/s)",
		publishTime.Round(time.Millisecond), sentAtKill, ackedAtKill, nAcked.Load(), float64(nAcked.Load())/publishTime.Seconds())

	restart := time.Now()
	b2 := startMqtkBroker(t, bin, args...)
	t.Logf("restarted with the store in %v", time.Since(restart).Round(time.Millisecond))
	sub = dialRaw(t, b2.addr, packet.V311)
	if ack := sub.connect(connectPacket(subID, false, 30)); !ack.SessionPresent {
		t.Fatalf("the persistent session is gone after kill -9\nbroker log:\n%s", b2.log())
	}
	var (
		got       = make([]bool, total)
		delivered int
		dups      int
		receiving = time.Now()
		deadline  = receiving.Add(40 * time.Second)
	)
	for time.Now().Before(deadline) {
		pk, err := sub.nextPublish(3 * time.Second) // acknowledges each
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("subscriber after the restart: %v\nbroker log:\n%s", err, b2.log())
			}
			break
		}
		var i int
		if _, err := fmt.Sscanf(string(pk.Payload), "k9-%05d", &i); err != nil || i < 0 || i >= int(sent.Load()) ||
			pk.Topic != "k9/stream" || string(pk.Payload) != payload(i) {
			t.Fatalf("the subscriber got %s %q, which nobody published", pk.Topic, pk.Payload)
		}
		if got[i] {
			dups++
			continue
		}
		got[i] = true
		delivered++
	}
	if time.Now().After(deadline) {
		t.Errorf("the subscriber was still receiving after 40s (%d messages)", delivered)
	}
	var lost []int
	unackedArrived := 0
	for i := range total {
		switch {
		case acked[i].Load() && !got[i]:
			lost = append(lost, i)
		case !acked[i].Load() && got[i]:
			unackedArrived++
		}
	}
	t.Logf("after the restart: %d distinct messages in %v (%d duplicates); %d of them were never acknowledged",
		delivered, time.Since(receiving).Round(time.Millisecond), dups, unackedArrived)
	if len(lost) > 0 {
		show := lost[:min(len(lost), 10)]
		t.Errorf("%d of %d acknowledged messages were lost across kill -9; the first: %v", len(lost), nAcked.Load(), show)
	}
}

// mountTmpfs mounts a tmpfs of size on a fresh directory and unmounts it
// when the test ends (after whatever the test registers later, such as a
// broker's Close). It skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs (root and mount(8) needed): %v: %s", size, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, bytes.TrimSpace(out))
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// retainedPayloads subscribes to filter on a fresh client and returns the
// retained messages it is sent, by topic, once the broker has been quiet
// for two seconds.
func retainedPayloads(t *testing.T, addr, filter string) map[string][]byte {
	t.Helper()
	c := dialRaw(t, addr, packet.V5)
	c.connect(connectPacket(fmt.Sprintf("retained-collector-%d", time.Now().UnixNano()), true, 30))
	c.subscribe(1, filter)
	got := map[string][]byte{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		pk, err := c.nextPublish(2 * time.Second)
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("reading retained messages: %v", err)
			}
			break
		}
		if !pk.Retain {
			t.Fatalf("%s arrived without the retain flag", pk.Topic)
		}
		if _, dup := got[pk.Topic]; dup {
			t.Errorf("retained %s sent twice", pk.Topic)
		}
		got[pk.Topic] = pk.Payload
	}
	c.c.Close()
	return got
}

// TestFullDiskRefusesInsteadOfLosing: on a 2 MiB tmpfs the store fills up
// while an MQTT 5 client publishes 200 retained 16 KiB messages at QoS 1.
// Each is either acknowledged (and then durable) or refused with PUBACK
// 0x80 and a reason string; a 3.1.1 publisher, which has no refusal code,
// has its connection closed. After the disk is given room and the broker
// restarted, every acknowledged message is retained and no refused one.
func TestFullDiskRefusesInsteadOfLosing(t *testing.T) {
	leakCheck(t)
	const n, size = 200, 16 << 10
	dir := mountTmpfs(t, "2m")
	log := &ui.SyncBuffer{}
	b1 := startBroker(t, Options{DataDir: dir, Log: log})
	addr := b1.tcpAddr(t)

	body := func(topic string) []byte {
		p := bytes.Repeat([]byte{'.'}, size)
		copy(p, topic+" ")
		return p
	}
	pub := dialRaw(t, addr, packet.V5)
	pub.connect(connectPacket("filler", true, 30))
	accepted := map[string][]byte{}
	var refused []string
	lastRefused := false
	for i := range n {
		topic := fmt.Sprintf("full/%03d", i)
		id := uint16(i + 1)
		pub.send(&packet.Publish{QoS: 1, PacketID: id, Retain: true, Topic: topic, Payload: body(topic)})
		p := pub.recv()
		ack, ok := p.(*packet.Ack)
		if !ok || ack.Kind != packet.TypePuback || ack.PacketID != id {
			t.Fatalf("publish %s: got %s, want its PUBACK", topic, pub.describe(p))
		}
		switch ack.Code {
		case packet.Success:
			accepted[topic] = body(topic)
			lastRefused = false
		case packet.UnspecifiedError:
			if ack.Properties.ReasonString == "" {
				t.Errorf("publish %s refused with 0x80 and no reason string", topic)
			}
			if len(refused) == 0 {
				t.Logf("first refusal at %s: %q", topic, ack.Properties.ReasonString)
			}
			refused = append(refused, topic)
			lastRefused = true
		default:
			t.Fatalf("publish %s: got %s, want success or 0x80", topic, pub.describe(p))
		}
	}
	t.Logf("2 MiB tmpfs: %d of %d retained %d KiB messages acknowledged, %d refused", len(accepted), n, size>>10, len(refused))
	if len(refused) == 0 {
		t.Fatalf("all %d messages were acknowledged: the disk never filled", n)
	}
	if len(accepted) == 0 {
		t.Fatalf("no message was acknowledged: the store was full from the start\nbroker log:\n%s", log.String())
	}
	if !lastRefused {
		t.Fatal("the last MQTT 5 publish was acknowledged: the disk is not full for the 3.1.1 case")
	}
	if l := log.String(); !strings.Contains(l, "no space left on device") {
		t.Errorf("the broker log does not say why the store refused writes:\n%s", l)
	}

	// A 3.1.1 PUBACK has no reason code: a publish the broker cannot
	// store must not be acknowledged, so the connection is closed.
	const v311Topic = "full/v311"
	old := dialRaw(t, addr, packet.V311)
	old.connect(connectPacket("filler-311", true, 30))
	old.send(&packet.Publish{QoS: 1, PacketID: 1, Retain: true, Topic: v311Topic, Payload: body(v311Topic)})
	if p, err := old.tryRecv(10 * time.Second); err == nil {
		t.Errorf("3.1.1 publish with the disk full: got %s, want the connection closed", old.describe(p))
	} else if isTimeout(err) {
		t.Error("3.1.1 publish with the disk full: neither acknowledged nor closed within 10s")
	}
	refused = append(refused, v311Topic)

	// Room again, then a clean restart on the same directory.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount the tmpfs bigger: %v: %s", err, out)
	}
	stopBroker(t, b1)
	b2 := startBroker(t, Options{DataDir: dir})
	got := retainedPayloads(t, b2.tcpAddr(t), "#")
	var missing, wrong, back []string
	for topic, want := range accepted {
		switch p, ok := got[topic]; {
		case !ok:
			missing = append(missing, topic)
		case !bytes.Equal(p, want):
			wrong = append(wrong, topic)
		}
	}
	for _, topic := range refused {
		if _, ok := got[topic]; ok {
			back = append(back, topic)
		}
	}
	if len(got) != len(accepted) || len(missing)+len(wrong)+len(back) > 0 {
		t.Errorf("after freeing space and restarting: %d retained, %d acknowledged; %d acknowledged missing %v, %d with another payload %v, %d refused came back %v",
			len(got), len(accepted), len(missing), missing, len(wrong), wrong, len(back), back)
	}
}

// runToExit runs `mqtk broker` with args until it exits (at most 30 s; a
// broker that announces it is ready is stopped at once) and returns its
// wait status and stderr.
func runToExit(t *testing.T, bin string, args ...string) (syscall.WaitStatus, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"broker", "--listen", "tcp://127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		stderr.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "broker ready") {
			_ = cmd.Process.Kill() // it opened its listeners: the test fails
		}
	}
	_ = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("mqtk broker did not exit within 30s:\n%s", stderr.String())
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws, stderr.String()
}

// TestDamagedStoreIsAClearError: a store file that is not a bbolt file,
// one cut short, one with its trees overwritten, one holding a record
// that does not decode, and one whose bucket points outside the file each
// make `mqtk broker` exit 1 with a message naming the file and saying to
// move it aside: no panic, no listener, and the file left exactly as it
// was for whoever wants to look into it or recover it.
func TestDamagedStoreIsAClearError(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the mqtk binary")
	}
	bin := mqtkBinary(t)

	// validStore is a data directory whose store holds retained messages
	// and a persistent session with queued messages, over many pages.
	validStore := func(t *testing.T) string {
		dir := t.TempDir()
		b := startBroker(t, Options{DataDir: dir})
		addr := b.tcpAddr(t)
		sub := dialRaw(t, addr, packet.V311)
		sub.connect(connectPacket("damaged-sub", false, 30))
		sub.subscribe(1, "q/#")
		sub.send(&packet.Disconnect{})
		readUntilClosed(t, sub.c, 10*time.Second)
		pub := dialRaw(t, addr, packet.V311)
		pub.connect(connectPacket("damaged-pub", true, 30))
		for i := range 60 {
			pub.publish(fmt.Sprintf("r/%d", i), strings.Repeat(fmt.Sprintf("retained %d ", i), 200), 1, true)
			pub.publish(fmt.Sprintf("q/%d", i), strings.Repeat(fmt.Sprintf("queued %d ", i), 100), 1, false)
		}
		stopBroker(t, b)
		return dir
	}
	cases := []struct {
		name   string
		damage func(t *testing.T) string // returns the data directory
	}{
		{"garbage", func(t *testing.T) string {
			dir := t.TempDir()
			junk := make([]byte, 32<<10)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range junk {
				junk[i] = byte(r.UintN(256))
			}
			copy(junk, "this is not a bbolt file\n")
			if err := os.WriteFile(filepath.Join(dir, boltstore.File), junk, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"truncated", func(t *testing.T) string {
			dir := validStore(t)
			path := filepath.Join(dir, boltstore.File)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/3); err != nil {
				t.Fatal(err)
			}
			t.Logf("store of %d bytes cut to %d", fi.Size(), fi.Size()/3)
			return dir
		}},
		{"damaged-pages", func(t *testing.T) string {
			// The meta pages are intact and the length is right, but the
			// pages after them (the buckets' trees) are overwritten.
			dir := validStore(t)
			path := filepath.Join(dir, boltstore.File)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			page := os.Getpagesize()
			r := rand.New(rand.NewPCG(3, 4))
			for i := 2 * page; i < len(b); i++ {
				b[i] = byte(r.UintN(256))
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"bad-record", func(t *testing.T) string {
			// A sound bbolt file holding a retained message record that
			// does not decode: found when the broker reads its state.
			dir := validStore(t)
			db, err := bolt.Open(filepath.Join(dir, boltstore.File), 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("retained")).Put([]byte("r/0"), []byte("not a message record"))
			})
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"page-id-out-of-range", func(t *testing.T) string {
			// A bucket whose root page id points 16 TiB beyond the file:
			// bbolt follows it into unmapped memory.
			dir := validStore(t)
			pointBucketsOutside(t, filepath.Join(dir, boltstore.File), "retained")
			return dir
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.damage(t)
			path := filepath.Join(dir, boltstore.File)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ws, stderr := runToExit(t, bin, "--data", dir)
			switch {
			case ws.Signaled():
				t.Errorf("killed by %v, want exit status 1", ws.Signal())
			case ws.ExitStatus() != 1:
				t.Errorf("exit status %d, want 1", ws.ExitStatus())
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic:") ||
				strings.Contains(stderr, "fatal error:") || strings.Contains(stderr, "SIGBUS") {
				t.Errorf("the broker crashed instead of reporting the damage")
			}
			if !strings.Contains(stderr, path) {
				t.Errorf("stderr does not name the file %s", path)
			}
			if !strings.Contains(stderr, "move it aside") && !strings.Contains(stderr, "move the file aside") {
				t.Errorf("stderr does not say to move the file aside")
			}
			if strings.Contains(stderr, "broker ready") {
				t.Errorf("the broker opened its listeners with a damaged store")
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("the store file after the attempt: %v", err)
			} else if !bytes.Equal(before, after) {
				t.Errorf("the store file was changed: %d bytes before, %d after", len(before), len(after))
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", stderr)
			} else {
				t.Logf("stderr: %s", strings.TrimSpace(stderr))
			}
		})
	}
}

// pointBucketsOutside rewrites, in the bbolt file at path, the root page
// id of every stored copy of the named top-level bucket (in leaf pages,
// current or free) to a page far beyond the end of the file. The layout is
// bbolt's file format: a 16-byte page header (id, flags, count, overflow),
// leaf pages flagged 0x02 with 16-byte elements (flags, pos, ksize, vsize;
// flag 0x01 for a bucket), a bucket's value starting with its root page id
// (0 for a bucket stored inline).
func pointBucketsOutside(t *testing.T, path, bucket string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	ps := int(le.Uint32(b[24:])) // the page size in the first meta page
	if ps < 512 || ps > 64<<10 {
		t.Fatalf("page size %d in %s", ps, path)
	}
	patched := 0
	for off := 2 * ps; off+ps <= len(b); off += ps {
		if le.Uint16(b[off+8:]) != 0x02 {
			continue
		}
		count := int(le.Uint16(b[off+10:]))
		for i := 0; i < count && 16+(i+1)*16 <= ps; i++ {
			e := off + 16 + i*16
			flags, pos, ks, vs := le.Uint32(b[e:]), int(le.Uint32(b[e+4:])), int(le.Uint32(b[e+8:])), int(le.Uint32(b[e+12:]))
			k := e + pos
			if flags&1 == 0 || ks != len(bucket) || vs < 16 || k+ks+vs > len(b) || string(b[k:k+ks]) != bucket {
				continue
			}
			if v := k + ks; le.Uint64(b[v:]) != 0 {
				le.PutUint64(b[v:], 1<<32) // 16 TiB on: unmapped, inside bbolt's array bound
				patched++
			}
		}
	}
	if patched == 0 {
		t.Fatalf("no stored root of bucket %q found in %s", bucket, path)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
