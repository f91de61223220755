package unixctl

import (
	"context"
	"fmt"
	"io"
)

// WaitClosed holds an idle connection to the control socket at path and
// returns when the daemon closes it: the process behind the socket exited.
// It turns "did ovs-vswitchd restart?" into an event instead of a poll. The
// socket path names the process by pid, so a restart that happened before the
// call (the path is gone or refuses) returns at once. It returns ctx's error
// when ctx ends first.
func (c *Client) WaitClosed(ctx context.Context, path string) error {
	conn, err := dial(ctx, path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()
	var buf [512]byte
	for {
		// The daemon never writes unasked; a read returns only on close.
		if _, err := conn.Read(buf[:]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return fmt.Errorf("%w: %s closed by the daemon", ErrUnavailable, path)
			}
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, path, err)
		}
	}
}
