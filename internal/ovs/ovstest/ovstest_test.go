package ovstest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/ovsnet/ovsnet/internal/ovssandbox"
)

func TestSandboxLifecycle(t *testing.T) {
	var netns, dir string
	t.Run("run", func(t *testing.T) {
		o := Start(t, Options{})
		netns, dir = o.Netns(), o.Dir()
		// A name nothing else on the machine uses, so the check below is
		// about this sandbox only.
		br := "sbt" + strconv.Itoa(os.Getpid()%1000000)
		o.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
		// The bridge's tap lives in the sandbox namespace, not the host's.
		if out := o.InNetns("ip", "link", "show", br); !strings.Contains(out, br) {
			t.Fatalf("%s tap not in namespace %s: %q", br, netns, out)
		}
		if err := exec.Command("ip", "link", "show", br).Run(); err == nil {
			t.Fatalf("%s tap leaked into the test's own namespace", br)
		}
		if out := o.Appctl("-t", o.Dir()+"/ovs-vswitchd."+strconv.Itoa(o.VswitchdPID())+".ctl", "version"); !strings.Contains(out, "Open vSwitch") {
			t.Fatalf("version: %q", out)
		}
		// A foreground restart against the kept conf.db keeps the bridge.
		o.KillVswitchd()
		o.StartVswitchd(ovssandbox.Foreground)
		if got := o.Vsctl("list-br"); got != br {
			t.Fatalf("bridges after restart: %q", got)
		}
		o.Must(o.PauseVswitchd())
		o.Must(o.ResumeVswitchd())
		o.StopVswitchd()
		o.StopDB()
	})
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), netns) {
		t.Errorf("namespace %s left behind", netns)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left behind", dir)
	}
}
