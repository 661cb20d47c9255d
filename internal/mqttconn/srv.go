package mqttconn

import (
	"context"
	"fmt"
	"net"
	"strings"
)

// lookupSRV is -S, as mosquitto's clients have it: the broker's host and
// port come from the DNS SRV record _mqtt._tcp.HOST, or
// _secure-mqtt._tcp.HOST when TLS is on (RFC 2782). Only the first
// record is used: the resolver orders them by priority and weight.
func lookupSRV(ctx context.Context, cfg *Config) error {
	service := "mqtt"
	if cfg.Scheme == "tls" {
		service = "secure-mqtt"
	}
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	name := fmt.Sprintf("_%s._tcp.%s", service, cfg.Host)
	_, addrs, err := r.LookupSRV(ctx, service, "tcp", cfg.Host)
	if err != nil {
		return fmt.Errorf("-S: SRV lookup of %s: %w", name, err)
	}
	if len(addrs) == 0 || addrs[0].Target == "." {
		// A target of "." says the service is decidedly not there.
		return fmt.Errorf("-S: %s names no broker", name)
	}
	cfg.Host = strings.TrimSuffix(addrs[0].Target, ".")
	cfg.Port = int(addrs[0].Port)
	return nil
}
