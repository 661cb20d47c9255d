package tlsgen

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// pahoScript connects with Python paho over mutual TLS, subscribes to a
// topic holding a retained message and prints its payload.
const pahoScript = `
import sys, ssl
import paho.mqtt.client as mqtt
port, ca, cert, key, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
got = []
def on_connect(c, u, f, rc):
    if rc != 0:
        print("connack", rc); c.disconnect(); return
    c.subscribe(topic, 1)
def on_message(c, u, m):
    got.append(m.payload.decode()); c.disconnect()
c = mqtt.Client(client_id="paho-tlsgen")
c.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
c.on_connect, c.on_message = on_connect, on_message
c.connect("localhost", port, 10)
c.loop_start()
import time
deadline = time.time() + 10
while not got and time.time() < deadline:
    time.sleep(0.05)
c.loop_stop()
print(got[0] if got else "nothing received")
`

// TestMosquittoAndPahoAcceptEveryKeyType runs Debian's mosquitto with
// require_certificate and use_identity_as_username on certificates of each
// key type, publishes with mosquitto_pub and reads with mosquitto_sub and
// Python paho, all using the generated client certificate.
func TestMosquittoAndPahoAcceptEveryKeyType(t *testing.T) {
	mosquittotest.Require(t)
	pubBin, subBin := mosquittotest.RequireClients(t)
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import paho.mqtt.client").Run(); err != nil {
		python = ""
	}
	for _, kt := range []KeyType{ECDSAP256, ECDSAP384, RSA2048, Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			mustRun(t, Options{Dir: dir, KeyType: kt, CommonName: "device-" + string(kt)})
			ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
			b := mosquittotest.Start(t, mosquittotest.Options{Listeners: []mosquittotest.Listener{{TLS: &mosquittotest.TLS{
				CAFile: ca, CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
				RequireCertificate: true, UseIdentityAsUsername: true,
			}}}})
			port := strconv.Itoa(b.Port())
			tool := func(bin string, args ...string) (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
				return strings.TrimSpace(string(out)), err
			}
			tlsArgs := []string{"-h", "localhost", "-p", port, "--cafile", ca, "--cert", cert, "--key", key}
			if out, err := tool(pubBin, append(tlsArgs, "-t", "kt", "-m", "hello "+string(kt), "-r", "-q", "1")...); err != nil {
				t.Fatalf("mosquitto_pub: %v %s\n%s", err, out, b.Log())
			}
			if out, err := tool(subBin, append(tlsArgs, "-t", "kt", "-C", "1", "-W", "10")...); err != nil || out != "hello "+string(kt) {
				t.Errorf("mosquitto_sub: %v %q", err, out)
			}
			if !strings.Contains(b.Log(), "u'device-"+string(kt)+"'") {
				t.Errorf("CN not used as the user name:\n%s", b.Log())
			}
			// A client with the CA but no certificate is refused.
			if out, err := tool(pubBin, "-h", "localhost", "-p", port, "--cafile", ca, "-t", "kt", "-m", "x"); err == nil {
				t.Errorf("mosquitto_pub without a client certificate succeeded: %s", out)
			}
			if python == "" {
				t.Log("python3 paho-mqtt not installed: skipping the paho client")
				return
			}
			if out, err := tool(python, "-c", pahoScript, port, ca, cert, key, "kt"); err != nil || out != "hello "+string(kt) {
				t.Errorf("python paho: %v %q", err, out)
			}
		})
	}
}
