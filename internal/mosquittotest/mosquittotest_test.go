package mosquittotest

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartServesAndRestarts(t *testing.T) {
	b := Start(t, Options{Listeners: []Listener{{}, {WebSockets: true}, {Unix: true}}, Persistence: true})
	for i := range b.Ports {
		network, addr := "tcp", b.Addr(i)
		if b.Socket[i] != "" {
			network, addr = "unix", b.Socket[i]
		}
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			t.Fatalf("listener %d: %v", i, err)
		}
		c.Close()
	}
	pub, sub := RequireClients(t)
	port := strconv.Itoa(b.Port())
	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port, "-t", "t/r", "-r", "-q", "1", "-m", "kept").CombinedOutput(); err != nil {
		t.Fatalf("publish retained: %v %s", err, out)
	}
	b.Restart()
	out, err := exec.Command(sub, "-h", "127.0.0.1", "-p", port, "-t", "t/r", "-C", "1", "-W", "5").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "kept" {
		t.Fatalf("retained message after restart: %v %q", err, out)
	}
}
