package mqttconn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/mqtk/mqtk/internal/clierr"
	"go.yaml.in/yaml/v3"
)

// ProfileFile is the parsed config file:
//
//	default: local          # used when no --profile / MQTK_PROFILE is given
//	profiles:
//	  local:
//	    url: mqtt://localhost:1883
//	  prod:
//	    host: broker.example.com
//	    port: 8883
//	    username: alice
//	    cafile: /etc/ssl/ca.pem
//
// A profile's keys are the long names of the connection flags, so whatever
// a flag can say a profile can say, with the same parsing.
type ProfileFile struct {
	Default  string                    `yaml:"default"`
	Profiles map[string]map[string]any `yaml:"profiles"`
}

// Profile is one named profile: flag name → values (lists for repeatable
// flags, one element otherwise), plus where it came from.
type Profile struct {
	Name   string
	Path   string
	Values map[string][]string
	// Warnings are for the user (for example a readable file with a password).
	Warnings []string
}

// ProfilePath returns $XDG_CONFIG_HOME/mqtk/config.yaml, falling back to
// ~/.config/mqtk/config.yaml on every OS (one place to document, rather
// than macOS's Library folder or Windows's AppData).
func ProfilePath(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "mqtk", "config.yaml")
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".config", "mqtk", "config.yaml")
}

// LoadProfile reads the named profile from path. With name empty it uses
// the file's default profile, and returns (nil, nil) when there is none or
// no file at all: a missing config file is normal. A named profile that
// does not exist is a usage error listing the ones that do.
func LoadProfile(path, name string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if name != "" {
			return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("profile %q not found: %s does not exist", name, path),
				Hints: []string{"create it with a 'profiles:' map, or drop --profile / MQTK_PROFILE"}}
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	var f ProfileFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("config file %s is not valid YAML: %w", path, err)}
	}
	if name == "" {
		name = f.Default
		if name == "" {
			return nil, nil
		}
	}
	raw, ok := f.Profiles[name]
	if !ok {
		names := make([]string, 0, len(f.Profiles))
		for n := range f.Profiles {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("profile %q not found in %s", name, path),
			Hints: []string{fmt.Sprintf("profiles there: %v", names)}}
	}
	p := &Profile{Name: name, Path: path, Values: map[string][]string{}}
	for k, v := range raw {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				p.Values[k] = append(p.Values[k], fmt.Sprint(e))
			}
		case map[string]any:
			// ws-header style maps: one "K: V" value each.
			keys := make([]string, 0, len(v))
			for hk := range v {
				keys = append(keys, hk)
			}
			sort.Strings(keys)
			for _, hk := range keys {
				p.Values[k] = append(p.Values[k], fmt.Sprintf("%s: %v", hk, v[hk]))
			}
		case nil:
		default:
			p.Values[k] = []string{fmt.Sprint(v)}
		}
	}
	if _, hasPw := p.Values["password"]; hasPw {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s holds a password and is readable by others (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path))
		}
	}
	return p, nil
}
