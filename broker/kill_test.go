package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

var bannerAddr = regexp.MustCompile(`mqtt://(127\.0\.0\.1:\d+)`)

// mqtkBroker is a running `mqtk broker` process.
type mqtkBroker struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{} // closed when stderr reached EOF
}

func (b *mqtkBroker) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// startMqtkBroker runs `mqtk broker` on a free port with args and waits for
// the banner that names its address.
func startMqtkBroker(t *testing.T, bin string, args ...string) *mqtkBroker {
	t.Helper()
	b := &mqtkBroker{done: make(chan struct{})}
	b.cmd = exec.Command(bin, append([]string{"broker", "--listen", "tcp://127.0.0.1:0"}, args...)...)
	b.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	pipe, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
		_ = b.cmd.Wait()
	})
	addrc := make(chan string, 1)
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(pipe)
		sent := false
		for sc.Scan() {
			b.mu.Lock()
			b.stderr.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
			if m := bannerAddr.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addrc <- m[1]
				sent = true
			}
		}
	}()
	select {
	case b.addr = <-addrc:
		return b
	case <-b.done:
		t.Fatalf("mqtk broker exited before listening:\n%s", b.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("mqtk broker printed no listener address:\n%s", b.log())
	}
	return nil
}

// wait returns the process's wait status once stderr is drained.
func (b *mqtkBroker) wait(t *testing.T) syscall.WaitStatus {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("mqtk broker did not exit:\n%s", b.log())
	}
	_ = b.cmd.Wait()
	ws, _ := b.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws
}

// TestMqtkBrokerDataSurvivesKill9 is the Done-when with the real
// binary: `mqtk broker --data DIR` is killed with SIGKILL and restarted on
// the same directory; retained messages and the queued QoS 1 messages of a
// persistent subscriber (3.1.1 and MQTT 5) are delivered. A SIGTERM stop
// then exits 0 and leaves the store unlocked and intact.
func TestMqtkBrokerDataSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the mqtk binary")
	}
	pub, sub := mosquittotest.RequireClients(t)
	bin := mqtkBinary(t)
	data := t.TempDir()

	b1 := startMqtkBroker(t, bin, "--data", data)
	mosq(t, sub, b1.addr, "-V", "311", "-c", "-i", "worker311", "-q", "1", "-t", "jobs/#", "-E")
	mosq(t, sub, b1.addr, "-V", "5", "-c", "-x", "86400", "-i", "worker5", "-q", "1", "-t", "jobs/#", "-E")
	mosq(t, pub, b1.addr, "-q", "1", "-r", "-t", "config/mode", "-m", "eco")
	mosq(t, pub, b1.addr, "-q", "1", "-r", "-t", "config/old", "-m", "x")
	mosq(t, pub, b1.addr, "-q", "1", "-r", "-t", "config/old", "-n") // cleared: must stay cleared
	// QoS 2: the broker stores the subscriber's copy before it acknowledges
	// the message, so once mosquitto_pub returns the copy is on disk.
	for _, m := range []string{"a", "b", "c"} {
		mosq(t, pub, b1.addr, "-q", "2", "-t", "jobs/"+m, "-m", "job-"+m)
	}
	mosq(t, pub, b1.addr, "-q", "2", "-r", "-t", "config/last", "-m", "set") // orders the retained writes above
	if err := b1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if ws := b1.wait(t); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("broker did not die by SIGKILL: %v", ws)
	}

	b2 := startMqtkBroker(t, bin, "--data", data)
	want := "jobs/a job-a\njobs/b job-b\njobs/c job-c"
	for _, args := range [][]string{
		{"-V", "311", "-c", "-i", "worker311"},
		{"-V", "5", "-c", "-x", "86400", "-i", "worker5"},
	} {
		out := mosq(t, sub, b2.addr, append(args, "-q", "1", "-t", "jobs/#", "-v", "-C", "3", "-W", "10")...)
		if got := strings.Join(sortedLines(out), "\n"); got != want {
			t.Errorf("%v after kill -9:\n%s\nwant\n%s\nbroker log:\n%s", args, got, want, b2.log())
		}
	}
	out := mosq(t, sub, b2.addr, "-t", "config/#", "-v", "-C", "2", "-W", "10")
	if got := strings.Join(sortedLines(out), "\n"); got != "config/last set\nconfig/mode eco" {
		t.Errorf("retained after kill -9:\n%s\nwant config/last and config/mode only", got)
	}

	if err := b2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if ws := b2.wait(t); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("SIGTERM exit = %v, want 0\n%s", ws, b2.log())
	}
	// The clean stop released the file lock and left the store intact: a
	// broker in this process opens it and serves what it holds.
	b3 := startBroker(t, Options{DataDir: data})
	if got := retained(t, b3.tcpAddr(t), "config/#"); fmt.Sprint(got) != "[config/last set config/mode eco]" {
		t.Errorf("retained after SIGTERM and a restart in process: %q, want config/last and config/mode", got)
	}
}
