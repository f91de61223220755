package agent

import (
	"context"
	"fmt"

	"github.com/ovsnet/ovsnet/internal/health"
	"github.com/ovsnet/ovsnet/internal/ovs/ofconn"
)

// releaseFlowRestoreWait removes other_config:flow-restore-wait once the
// flows are in, and waits until ovs-vswitchd has read the removal. The OVS
// container's start script sets the key before it starts ovs-vswitchd, so a
// restarted ovs-vswitchd handles no packet (and, on the kernel datapath,
// keeps forwarding with the previous process's datapath flows) until the
// agent has restored the pipeline. It runs after every resync and removes
// the key whoever set it and whenever: a key left at true by anyone would
// stop every bridge of that ovs-vswitchd from forwarding at its next start,
// so an agent meeting it clears it after its first resync.
func (a *Agent) releaseFlowRestoreWait(ctx context.Context, sess *ofconn.Session) error {
	on, err := a.db.FlowRestoreWait()
	if err != nil {
		return fmt.Errorf("read other_config:flow-restore-wait: %w", err)
	}
	if !on {
		return nil
	}
	a.status.Set(health.OpenFlowNotReady, "clearing other_config:flow-restore-wait: ovs-vswitchd processes no packet while it is set")
	seq, err := a.db.ClearFlowRestoreWait(ctx)
	if err != nil {
		return fmt.Errorf("%w (ovs-vswitchd forwards nothing while the key is true; the agent retries, or remove it with: ovs-vsctl remove open_vswitch . other_config flow-restore-wait)", err)
	}
	a.log.Debug("flow-restore-wait removal committed", "cfg_seq", seq)
	// Readiness means forwarding: wait until this ovs-vswitchd has read
	// the removal (it acknowledges next_cfg in the same pass), or is gone.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	err = a.db.Wait(wctx, "ovs-vswitchd to read the removal of flow-restore-wait", func() (bool, error) {
		return a.db.ConfigApplied(seq)
	})
	if err != nil {
		if serr := sess.Err(); serr != nil && ctx.Err() == nil {
			return fmt.Errorf("ovs-vswitchd went away before it read the removal of flow-restore-wait: %w", serr)
		}
		return err
	}
	a.log.Info("flow-restore-wait cleared", "cfg_seq", seq)
	return nil
}
