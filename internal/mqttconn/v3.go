package mqttconn

import (
	"context"
	"errors"
)

func dialV3(ctx context.Context, cfg Config, id string) (Client, error) {
	return nil, &Error{Kind: KindOther, Op: "connect to " + cfg.String(), Err: errors.New("MQTT " + cfg.Version.String() + " is being wired in; use -V 5 meanwhile")}
}
