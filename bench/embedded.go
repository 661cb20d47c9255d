package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqtk/mqtk/broker"
)

// startEmbedded starts the project's broker on a free loopback port, with
// anonymous access, for the no-URL default. It listens on 127.0.0.1 only.
func startEmbedded(ctx context.Context) (string, func() error, error) {
	b, err := broker.New(broker.Options{Listeners: []string{"tcp://127.0.0.1:0"}, AllowAnonymous: true})
	if err != nil {
		return "", nil, err
	}
	if err := b.Start(ctx); err != nil {
		return "", nil, err
	}
	lns := b.Listeners()
	if len(lns) == 0 {
		_ = b.Close(context.Background())
		return "", nil, errors.New("broker started with no listener")
	}
	stop := func() error {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(c); err != nil {
			return fmt.Errorf("stop the in-process broker: %w", err)
		}
		return nil
	}
	return lns[0].URL(), stop, nil
}
