package broker

// The settings file of `mqtk broker --config FILE.yaml`, beside the Options
// it fills: read strictly (an unknown key is a typo, not something to
// ignore), completed with every default so that --print-config shows what
// will run, and the listeners that --tls adds. The command replays its
// flags over what the file set; that part needs the flag set and stays in
// cmd/mqtk.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"go.yaml.in/yaml/v3"
)

// DefaultListener is where a broker listens when no listener is given:
// this machine only, on MQTT's port.
const DefaultListener = "tcp://127.0.0.1:1883"

// Config is what a --config file holds and --print-config prints: every
// option by its flag name.
type Config struct {
	Options `yaml:",inline"`
	// TLS asks for MQTTS with certificates made by 'mqtk tlsgen' (mqtk
	// broker --tls). broker does not make certificates: the command makes
	// them and passes their paths to AddLocalTLS.
	TLS bool `yaml:"tls"`
}

// DefaultConfig is a Config with nothing set but the default limits, the
// values the flags start from.
func DefaultConfig() Config {
	return Config{Options: Options{Limits: DefaultLimits()}}
}

// ReadConfig reads a settings file over DefaultConfig. Keys are the flag
// names without "--"; "listen" takes one URL or a list. An unknown key or
// a bad value is an *OptionError naming the "config" option.
func ReadConfig(path string) (Config, error) {
	c := DefaultConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		return c, optionErr("config", "", fmt.Errorf("read config: %w", err))
	}
	data, err = listenAsList(data)
	if err != nil {
		return c, optionErr("config", "", fmt.Errorf("config %s: %w", path, err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, optionErr("config", "keys are the flag names without --; 'mqtk broker --print-config' prints them all",
			fmt.Errorf("config %s: %w", path, err))
	}
	return c, nil
}

// listenAsList lets a config file say "listen: tcp://..." for a single
// listener, as one would write it by hand, by making the scalar a
// one-element list before the strict decode.
func listenAsList(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return data, nil
	}
	m := doc.Content[0]
	changed := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k, v := m.Content[i], m.Content[i+1]; k.Value == "listen" && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			m.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{v}}
			changed = true
		}
	}
	if !changed {
		return data, nil
	}
	return yaml.Marshal(&doc)
}

// Complete fills in what was left out (the default listener, every
// limit, the text log format), so that the Config prints as what will
// run, and refuses a log format New would refuse: --print-config checks
// what it prints without building a broker.
func (c *Config) Complete() error {
	if len(c.Listeners) == 0 {
		c.Listeners = []string{DefaultListener}
	}
	c.Limits = c.Limits.WithDefaultsExact()
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return optionErr("log-format", "", fmt.Errorf("--log-format %q: use text or json", c.LogFormat))
	}
	return nil
}

// AddLocalTLS serves MQTTS with the given certificate files, those
// `mqtk broker --tls` makes. A certificate or CA set explicitly is kept.
// Unless a listener already speaks TLS, it adds tls:// on port 8883 of the
// (last) tcp listener's host, 127.0.0.1 without one, and beside a ws
// listener wss:// on port 8443 with the same host and path. Listeners that
// do not parse are left for New to report.
func (o *Options) AddLocalTLS(certFile, keyFile, caFile string) {
	if o.TLSCert == "" && o.TLSKey == "" {
		o.TLSCert, o.TLSKey = certFile, keyFile
	}
	if o.TLSCA == "" {
		o.TLSCA = caFile
	}
	host := "127.0.0.1"
	var ws *listenerSpec
	for _, raw := range o.Listeners {
		spec, err := parseListen(raw)
		if err != nil {
			continue
		}
		switch spec.scheme {
		case "tls", "wss":
			return
		case "ws":
			ws = &spec
		case "tcp":
			host, _, _ = net.SplitHostPort(spec.addr) // parseListen joined it
		}
	}
	o.Listeners = append(o.Listeners, "tls://"+net.JoinHostPort(host, "8883"))
	if ws != nil {
		h, _, _ := net.SplitHostPort(ws.addr)
		o.Listeners = append(o.Listeners, "wss://"+net.JoinHostPort(h, "8443")+ws.path)
	}
}
