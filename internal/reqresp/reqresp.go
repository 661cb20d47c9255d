// Package reqresp is the request/response convention `mqtk rr` and
// `mqtk reply` share where the protocol has none. An MQTT 5 request names
// its Response Topic and carries Correlation Data; an MQTT 3.1.1 or 3.1
// request cannot, so without -e the response to a request on topic T is
// published on T + a suffix, "/reply" unless --response-suffix says
// otherwise. Both commands take the suffix from here, so that they cannot
// drift apart.
package reqresp

import "cmp"

// DefaultSuffix is the suffix both sides use when the user sets none.
const DefaultSuffix = "/reply"

// Suffix is suffix, or DefaultSuffix when suffix is empty.
func Suffix(suffix string) string { return cmp.Or(suffix, DefaultSuffix) }

// Topic is where the response to a request on request goes under the
// convention with suffix (empty: DefaultSuffix).
func Topic(request, suffix string) string { return request + Suffix(suffix) }
