package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/ui"
)

// parseConn runs a throwaway command carrying the connection flags and
// returns the Config they resolve to.
func parseConn(t *testing.T, env map[string]string, args ...string) (mqttconn.Config, string, error) {
	t.Helper()
	streams, _, errb := ui.Test(nil)
	a := &app{io: streams, getenv: func(k string) string { return env[k] }}
	var got mqttconn.Config
	var cerr error
	var flags *connFlags
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error {
		got, cerr = flags.config(context.Background())
		return nil
	}}
	cmd.Flags().Bool("help", false, "help") // -h is the host, as on the real root
	flags = addConnFlags(cmd, a, "c")
	cmd.SetArgs(args)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); err != nil {
		return got, errb.String(), err
	}
	return got, errb.String(), cerr
}

func TestConnFlagsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "mqtk")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "config.yaml"), []byte(`
default: dev
profiles:
  dev:
    host: profile-host
    port: 1999
    username: profile-user
    keepalive: 30
  other:
    url: mqtts://other-host
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"XDG_CONFIG_HOME": dir}

	c, _, err := parseConn(t, env)
	if err != nil || c.Host != "profile-host" || c.Port != 1999 || c.Username != "profile-user" || c.KeepAlive != 30*time.Second {
		t.Fatalf("default profile: %+v %v", c, err)
	}
	env["MQTK_USERNAME"], env["MQTK_PASSWORD"] = "env-user", "env-pw"
	c, _, err = parseConn(t, env)
	if err != nil || c.Username != "env-user" || c.Password != "env-pw" || c.Host != "profile-host" {
		t.Fatalf("env over profile: %+v %v", c, err)
	}
	c, _, err = parseConn(t, env, "-u", "flag-user", "-h", "flag-host")
	if err != nil || c.Username != "flag-user" || c.Host != "flag-host" || c.Port != 1999 {
		t.Fatalf("flag over env: %+v %v", c, err)
	}
	env["MQTK_PROFILE"] = "other"
	c, _, err = parseConn(t, env)
	if err != nil || c.String() != "mqtts://other-host:8883" {
		t.Fatalf("MQTK_PROFILE: %s %v", c.String(), err)
	}
	// A URL from a stronger source replaces the whole address of a weaker
	// one: the profile's host, port and user must not leak into it.
	delete(env, "MQTK_PROFILE")
	delete(env, "MQTK_USERNAME")
	delete(env, "MQTK_PASSWORD")
	c, _, err = parseConn(t, env, "-L", "mqtt://127.0.0.1:1884")
	if err != nil || c.String() != "mqtt://127.0.0.1:1884" || c.Username != "profile-user" {
		t.Fatalf("-L over profile host/port (the login stays): %s user %q %v", c.String(), c.Username, err)
	}
	c, _, err = parseConn(t, env, "-L", "mqtt://url-user@127.0.0.1:1884")
	if err != nil || c.Username != "url-user" {
		t.Fatalf("-L with a user over the profile's: user %q %v", c.Username, err)
	}
	env["MQTK_URL"] = "mqtt://env-host:1885"
	c, _, err = parseConn(t, env)
	if err != nil || c.String() != "mqtt://env-host:1885" || c.Username != "profile-user" {
		t.Fatalf("MQTK_URL over profile host/port: %s user %q %v", c.String(), c.Username, err)
	}
	// ...while an explicit flag still overrides a part of a weaker URL.
	c, _, err = parseConn(t, env, "-p", "1886")
	if err != nil || c.String() != "mqtt://env-host:1886" {
		t.Fatalf("-p over MQTK_URL: %s %v", c.String(), err)
	}
	delete(env, "MQTK_URL")
	_, _, err = parseConn(t, env, "--profile", "missing")
	if mqttconn.KindOf(err) != mqttconn.KindUsage {
		t.Fatalf("missing profile: %v", err)
	}
}

func TestConnFlagsMosquittoSpellings(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("from-file\nignored\n"), 0o600)
	c, _, err := parseConn(t, nil, "-h", "127.0.0.1", "-p", "1884", "-V", "mqttv311", "-i", "me", "-k", "5",
		"-u", "u", "--password-file", pwFile, "--will-topic", "w", "--will-payload", "bye", "--will-qos", "1",
		"--ws-header", "X-A: b", "--insecure", "-d")
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != mqttconn.V311 || c.ClientID != "me" || c.KeepAlive != 5*time.Second || c.Password != "from-file" ||
		c.Will == nil || c.Will.QoS != 1 || string(c.Will.Payload) != "bye" || c.WSHeaders.Get("X-A") != "b" ||
		!c.TLS.Enabled || c.Port != 1884 || c.Debug == nil {
		t.Errorf("parsed: %+v", c)
	}
	// -c was given away by this command: --no-clean keeps its long form.
	if _, _, err := parseConn(t, nil, "--no-clean", "-i", "x"); err != nil {
		t.Errorf("--no-clean long form: %v", err)
	}
	if _, _, err := parseConn(t, nil, "-c"); err == nil {
		t.Errorf("-c must not be bound when the command keeps it")
	}
}

func TestConnFlagsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"-V", "7"},
		{"-k", "soon"},
		{"-P", "a", "--password-file", "f"},
		{"--password-file", "/nonexistent/pw"},
		{"--ws-header", "novalue"},
		{"--will-qos", "3", "--will-topic", "t"},
		{"-L", "http://x"},
		{"--cert", "c.pem"},
	} {
		_, _, err := parseConn(t, nil, args...)
		if mqttconn.KindOf(err) != mqttconn.KindUsage {
			t.Errorf("%v: want usage error, got %v", args, err)
		}
	}
	env := map[string]string{"MQTK_PORT": "abc"}
	_, _, err := parseConn(t, env)
	if mqttconn.KindOf(err) != mqttconn.KindUsage || !strings.Contains(err.Error(), "MQTK_PORT") {
		t.Errorf("bad env value must name the variable: %v", err)
	}
}

// -I and --ws-path reach the Config (the transports tests cover what the
// Config does with them).
func TestConnFlagsIDPrefixAndWSPath(t *testing.T) {
	c, _, err := parseConn(t, nil, "-I", "probe-", "-L", "ws://127.0.0.1:9001", "--ws-path", "/custom")
	if err != nil {
		t.Fatal(err)
	}
	if c.IDPrefix != "probe-" || c.WSPath != "/custom" || c.String() != "ws://127.0.0.1:9001/custom" {
		t.Errorf("IDPrefix %q, WSPath %q, URL %s", c.IDPrefix, c.WSPath, c.String())
	}
	c, _, err = parseConn(t, nil, "--will-topic", "w", "--will-retain")
	if err != nil || c.Will == nil || !c.Will.Retain {
		t.Errorf("--will-retain: will %+v, %v", c.Will, err)
	}
}
