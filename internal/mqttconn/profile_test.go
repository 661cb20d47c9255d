package mqttconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqtk/mqtk/internal/clierr"
)

func writeFile(t *testing.T, mode os.FileMode, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadProfile(t *testing.T) {
	p := writeFile(t, 0o600, `
default: local
profiles:
  local:
    url: mqtt://localhost:1884
  prod:
    host: broker.test
    port: 8883
    insecure: true
    ws-header: {X-A: b, Authorization: Bearer t}
    alpn: [mqtt, x]
`)
	got, err := LoadProfile(p, "")
	if err != nil || got == nil || got.Values["url"][0] != "mqtt://localhost:1884" {
		t.Fatalf("default profile: %+v %v", got, err)
	}
	got, err = LoadProfile(p, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if got.Values["port"][0] != "8883" || got.Values["insecure"][0] != "true" ||
		strings.Join(got.Values["ws-header"], "|") != "Authorization: Bearer t|X-A: b" ||
		strings.Join(got.Values["alpn"], ",") != "mqtt,x" {
		t.Errorf("values: %+v", got.Values)
	}
	_, err = LoadProfile(p, "nope")
	if clierr.KindOf(err) != clierr.KindUsage || !strings.Contains(strings.Join(clierr.HintsOf(err), ""), "local prod") {
		t.Errorf("unknown profile: %v %v", err, clierr.HintsOf(err))
	}
}

func TestLoadProfileMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if p, err := LoadProfile(missing, ""); p != nil || err != nil {
		t.Errorf("missing file without a name must be fine: %v %v", p, err)
	}
	if _, err := LoadProfile(missing, "x"); clierr.KindOf(err) != clierr.KindUsage {
		t.Errorf("missing file with a name: %v", err)
	}
}

func TestLoadProfileWarnsAboutReadablePassword(t *testing.T) {
	p := writeFile(t, 0o644, "profiles:\n  a:\n    password: s3cret\n")
	got, err := LoadProfile(p, "a")
	if err != nil || len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], "chmod 600") {
		t.Fatalf("want a chmod warning: %+v %v", got, err)
	}
	p = writeFile(t, 0o600, "profiles:\n  a:\n    password: s3cret\n")
	if got, _ := LoadProfile(p, "a"); len(got.Warnings) != 0 {
		t.Errorf("0600 file must not warn: %v", got.Warnings)
	}
}

func TestLoadProfileBadYAML(t *testing.T) {
	p := writeFile(t, 0o600, "profiles: [\n")
	if _, err := LoadProfile(p, ""); clierr.KindOf(err) != clierr.KindUsage {
		t.Errorf("bad YAML: %v", err)
	}
}

// Without XDG_CONFIG_HOME the file is ~/.config/mqtk/config.yaml on every
// OS (not the platform's own config directory), as the README says.
func TestProfilePathFallsBackToDotConfig(t *testing.T) {
	env := map[string]string{"HOME": "/home/u"}
	if got, want := ProfilePath(func(k string) string { return env[k] }), filepath.Join("/home/u", ".config", "mqtk", "config.yaml"); got != want {
		t.Errorf("ProfilePath without XDG_CONFIG_HOME = %s, want %s", got, want)
	}
	env["XDG_CONFIG_HOME"] = "/x"
	if got, want := ProfilePath(func(k string) string { return env[k] }), filepath.Join("/x", "mqtk", "config.yaml"); got != want {
		t.Errorf("ProfilePath with XDG_CONFIG_HOME = %s, want %s", got, want)
	}
}
