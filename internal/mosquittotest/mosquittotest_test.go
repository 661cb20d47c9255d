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

// Only311 refuses MQTT 5 as a 3.1.1-only broker does, in mosquitto_pub's
// own words, and passes 3.1.1 and 3.1 through to mosquitto.
func TestOnly311(t *testing.T) {
	b := Start(t, Options{})
	pub, sub := RequireClients(t)
	port := strconv.Itoa(Only311(t, b.Addr(0)))
	out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-t", "g/x", "-m", "no").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Unsupported Protocol Version") {
		t.Errorf("mosquitto_pub -V mqttv5 through Only311: %v %q, want the refusal mosquitto_pub reads as an unsupported protocol version", err, out)
	}
	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-t", "g/x", "-r", "-m", "kept").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub -V mqttv311 through Only311: %v %s", err, out)
	}
	out, err = exec.Command(sub, "-h", "127.0.0.1", "-p", port, "-V", "mqttv31", "-t", "g/x", "-C", "1", "-W", "5").CombinedOutput()
	if err != nil || string(out) != "kept\n" {
		t.Fatalf("mosquitto_sub -V mqttv31 through Only311: %v %q", err, out)
	}
}
