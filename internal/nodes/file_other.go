//go:build !linux

package nodes

import "context"

// Run implements Source: off Linux the file is read once (no watch yet);
// restart the agent after changing it.
func (f *File) Run(ctx context.Context) error {
	f.reload()
	<-ctx.Done()
	return nil
}
