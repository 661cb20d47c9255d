package broker

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mosquittotest"
)

// Hashes written by Debian's mosquitto_passwd must verify unchanged, in
// both formats it can write.
func TestPasswordFileFromMosquittoPasswd(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd not installed (apt-get install mosquitto); .ci/run installs it")
	}
	for _, algo := range []string{"sha512-pbkdf2", "sha512"} {
		t.Run(algo, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "passwd")
			for i, up := range [][2]string{{"alice", "s3cret"}, {"bob", "pa:ss wörd"}} {
				args := []string{"-H", algo, "-b", file, up[0], up[1]}
				if i == 0 {
					args = append([]string{"-c"}, args...)
				}
				out, err := exec.Command(bin, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
				}
			}
			data, _ := os.ReadFile(file)
			prefix := map[string]string{"sha512-pbkdf2": "alice:$7$", "sha512": "alice:$6$"}[algo]
			if !strings.Contains(string(data), prefix) {
				t.Fatalf("unexpected file:\n%s", data)
			}
			users, err := loadPasswdFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !users["alice"].verify([]byte("s3cret")) || !users["bob"].verify([]byte("pa:ss wörd")) {
				t.Fatal("correct passwords rejected")
			}
			if users["alice"].verify([]byte("s3cret ")) || users["bob"].verify([]byte("s3cret")) {
				t.Fatal("wrong passwords accepted")
			}
		})
	}
}

func TestSetPasswordAddsAndChanges(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(file, []byte("# users\ncarol:$6$c2FsdHNhbHRzYWx0$abc=\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(file, "alice", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(file, "alice", []byte("two")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(file)
	if strings.Count(string(data), "alice:") != 1 || !strings.HasPrefix(string(data), "# users\ncarol:") {
		t.Fatalf("file not updated in place:\n%s", data)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode changed to %v", fi.Mode().Perm())
	}
	users, err := loadPasswdFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !users["alice"].verify([]byte("two")) || users["alice"].verify([]byte("one")) {
		t.Fatal("password not changed")
	}
	for _, bad := range []string{"", "a:b", "x\ny"} {
		if err := SetPassword(file, bad, []byte("p")); err == nil {
			t.Errorf("user %q accepted", bad)
		}
	}
}

func TestLoadPasswdFileRejectsPlainText(t *testing.T) {
	file := writeFile(t, "passwd", "alice:plaintext\n")
	if _, err := loadPasswdFile(file); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v", err)
	}
}

func TestACLRules(t *testing.T) {
	rules, err := parseACL(`# anonymous
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic write cmd/+/set
topic sensors/#

pattern read users/%u/#
pattern write clients/%c/out
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user     string
		client   string
		topic    string
		write    bool
		expected bool
	}{
		{"", "c1", "public/a", false, true},
		{"", "c1", "public/#", false, true},
		{"", "c1", "public/a", true, false},
		{"", "c1", "public/secret", false, false},
		{"", "c1", "#", false, false},
		{"", "c1", "users/alice/x", false, false}, // %u needs a user
		{"", "c1", "clients/c1/out", true, true},
		{"alice", "c2", "alice/x/y", true, true},
		{"alice", "c2", "alice/#", false, true},
		{"alice", "c2", "alice", false, true},
		{"alice", "c2", "cmd/lamp/set", true, true},
		{"alice", "c2", "cmd/lamp/set", false, false},
		{"alice", "c2", "cmd/#", true, false},
		{"alice", "c2", "sensors/t", true, true}, // no access word = readwrite
		{"alice", "c2", "public/a", false, false},
		{"alice", "c2", "users/alice/inbox", false, true},
		{"alice", "c2", "users/bob/inbox", false, false},
		{"alice", "c2", "users/+/inbox", false, false},
		{"alice", "c2", "clients/c1/out", true, false},
		{"bob", "c3", "alice/x", false, false},
		{"+", "c3", "users/bob/x", false, false}, // a wildcard user name must not widen %u
	} {
		got := rules.allowed(tc.user, tc.user == "", tc.client, tc.topic, tc.write)
		if got != tc.expected {
			t.Errorf("user %q client %q topic %q write %v: got %v", tc.user, tc.client, tc.topic, tc.write, got)
		}
	}
	for _, bad := range []string{"topic read", "frobnicate x", "user", "topic read a/#/b", "pattern $share//a", "topic a/\xff"} {
		if _, err := parseACL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A bad filter is reported in topic's words, which name the fix.
	if _, err := parseACL("user a\ntopic read a/#/b"); err == nil || err.Error() != `line 2: topic filter "a/#/b": # must be the last level (a/#)` {
		t.Errorf("parseACL: %v", err)
	}
}

// Files written by `mqtk broker passwd` ($7$ hashes) work unchanged in
// Debian's mosquitto: the right password connects, a wrong one is refused
// with CONNACK return code 5 (not authorised).
func TestMqtkPasswdFileInMosquitto(t *testing.T) {
	pub, _ := mosquittotest.RequireClients(t)
	mosquittotest.Require(t)
	file := filepath.Join(t.TempDir(), "passwd")
	for _, up := range [][2]string{{"alice", "s3cret"}, {"bob", "pa:ss wörd"}} {
		out, e, code := runIn(t, 30*time.Second, up[1]+"\n", mqtkBinary(t), "broker", "passwd", "--password-stdin", file, up[0])
		if code != 0 {
			t.Fatalf("mqtk broker passwd %s: exit %d: %s%s", up[0], code, out, e)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "alice:$7$") || !strings.Contains(string(data), "\nbob:$7$") {
		t.Fatalf("want $7$ hashes for alice and bob:\n%s", data)
	}
	m := mosquittotest.Start(t, mosquittotest.Options{PasswordFile: file})
	port := strconv.Itoa(m.Port())
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "s3cret", true},
		{"bob", "pa:ss wörd", true},
		{"alice", "s3cret ", false},
		{"bob", "s3cret", false},
	} {
		_, e, code := run(t, 15*time.Second, pub, "-h", "127.0.0.1", "-p", port, "-V", "311", "-u", tc.user, "-P", tc.pass, "-t", "passwd/x", "-m", "x")
		switch {
		case tc.ok && code != 0:
			t.Errorf("%s/%q refused by mosquitto: exit %d: %s\nmosquitto log:\n%s", tc.user, tc.pass, code, e, m.Log())
		case !tc.ok && (code == 0 || !strings.Contains(e, "Connection Refused: not authorised")):
			t.Errorf("%s/%q: exit %d, stderr %q; want CONNACK return code 5 (not authorised)", tc.user, tc.pass, code, e)
		}
	}
}
