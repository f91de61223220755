package podnet

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestHostIfName(t *testing.T) {
	a := HostIfName("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "eth0")
	if len(a) != maxIfNameLen {
		t.Errorf("HostIfName length = %d (%q), want %d", len(a), a, maxIfNameLen)
	}
	if !strings.HasPrefix(a, hostIfPrefix) {
		t.Errorf("HostIfName = %q, want prefix %q", a, hostIfPrefix)
	}
	if err := validIfName(a); err != nil {
		t.Errorf("HostIfName = %q is not a valid interface name: %v", a, err)
	}
	if b := HostIfName("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "eth0"); b != a {
		t.Errorf("HostIfName is not stable: %q then %q", a, b)
	}
	seen := map[string]string{a: "first"}
	for _, in := range [][2]string{
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "eth1"},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee", "eth0"},
		// The separator keeps these two apart.
		{"abc", "deth0"},
		{"abcd", "eth0"},
		{"", ""},
	} {
		n := HostIfName(in[0], in[1])
		if prev, dup := seen[n]; dup {
			t.Errorf("HostIfName(%q, %q) = %q, same as for %s", in[0], in[1], n, prev)
		}
		seen[n] = in[0] + "/" + in[1]
	}
}

func TestMACFromIP(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		want string
	}{
		{"10.244.0.5", "0a:58:0a:f4:00:05"},
		{"192.168.255.1", "0a:58:c0:a8:ff:01"},
		{"::ffff:10.244.0.5", "0a:58:0a:f4:00:05"},
		{"fd00:10:244::a:5", "0a:58:00:0a:00:05"},
	} {
		got := MACFromIP(netip.MustParseAddr(tc.ip))
		if got.String() != tc.want {
			t.Errorf("MACFromIP(%s) = %s, want %s", tc.ip, got, tc.want)
		}
		if got[0]&0x02 == 0 || got[0]&0x01 != 0 {
			t.Errorf("MACFromIP(%s) = %s is not a locally administered unicast MAC", tc.ip, got)
		}
	}
	if got := MACFromIP(netip.Addr{}); got != nil {
		t.Errorf("MACFromIP(invalid) = %s, want nil", got)
	}
}

func validConfig() Config {
	return Config{
		NetnsPath:  "/var/run/netns/x",
		IfName:     "eth0",
		HostIfName: HostIfName("c1", "eth0"),
		Address:    netip.MustParsePrefix("10.244.0.5/24"),
		Gateway:    netip.MustParseAddr("10.244.0.1"),
	}
}

func TestNormalizeDefaults(t *testing.T) {
	cfg, err := validConfig().normalize()
	if err != nil {
		t.Fatalf("normalize(valid config) = %v", err)
	}
	if cfg.MTU != DefaultMTU {
		t.Errorf("MTU = %d, want default %d", cfg.MTU, DefaultMTU)
	}
	if want := MACFromIP(cfg.Address.Addr()); cfg.MAC.String() != want.String() {
		t.Errorf("MAC = %s, want derived %s", cfg.MAC, want)
	}

	in := validConfig()
	in.MAC = net.HardwareAddr{0x02, 1, 2, 3, 4, 5}
	in.MTU = 9000
	in.Gateway = netip.MustParseAddr("::ffff:10.244.0.1")
	cfg, err = in.normalize()
	if err != nil {
		t.Fatalf("normalize = %v", err)
	}
	if cfg.MAC.String() != "02:01:02:03:04:05" || cfg.MTU != 9000 {
		t.Errorf("explicit MAC/MTU changed: %s %d", cfg.MAC, cfg.MTU)
	}
	if cfg.Gateway != netip.MustParseAddr("10.244.0.1") {
		t.Errorf("gateway = %s, want the IPv4 form 10.244.0.1", cfg.Gateway)
	}

	in = validConfig()
	in.Address = netip.MustParsePrefix("fd00::5/64")
	in.Gateway = netip.MustParseAddr("fe80::1%eth0")
	cfg, err = in.normalize()
	if err != nil {
		t.Fatalf("normalize(IPv6 with zoned link-local gateway) = %v", err)
	}
	if cfg.Gateway.Zone() != "" {
		t.Errorf("gateway zone kept: %s", cfg.Gateway)
	}
}

func TestNormalizeRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no netns", func(c *Config) { c.NetnsPath = "" }, "CNI_NETNS"},
		{"no ifname", func(c *Config) { c.IfName = "" }, "pod interface name: empty"},
		{"long ifname", func(c *Config) { c.IfName = "eth0123456789012" }, "longer than 15"},
		{"slash ifname", func(c *Config) { c.IfName = "eth/0" }, "contains"},
		{"dot ifname", func(c *Config) { c.IfName = ".." }, "not allowed"},
		{"bad host ifname", func(c *Config) { c.HostIfName = "a b" }, "host interface name"},
		{"tiny MTU", func(c *Config) { c.MTU = 67 }, "MTU 67"},
		{"huge MTU", func(c *Config) { c.MTU = 70000 }, "MTU 70000"},
		{"no address", func(c *Config) { c.Address = netip.Prefix{} }, "pod address is missing"},
		{"mapped address", func(c *Config) { c.Address = netip.MustParsePrefix("::ffff:10.0.0.5/120") }, "IPv4-mapped"},
		{"no gateway", func(c *Config) { c.Gateway = netip.Addr{} }, "gateway is missing"},
		{"mixed families", func(c *Config) { c.Gateway = netip.MustParseAddr("fd00::1") }, "different IP families"},
		{"gateway is pod", func(c *Config) { c.Gateway = netip.MustParseAddr("10.244.0.5") }, "equals the pod address"},
		{"multicast MAC", func(c *Config) { c.MAC = net.HardwareAddr{1, 0, 0, 0, 0, 1} }, "unicast"},
		{"short MAC", func(c *Config) { c.MAC = net.HardwareAddr{2, 0, 0} }, "6-byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.change(&cfg)
			_, err := cfg.normalize()
			if err == nil {
				t.Fatalf("normalize accepted %+v", cfg)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "invalid pod interface config") {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestCheckErrorListsEveryProblem(t *testing.T) {
	err := &CheckError{Problems: []string{"pod interface eth0 in /x has MTU 1400, want 1500", "host interface h does not exist in /y"}}
	want := "pod interface eth0 in /x has MTU 1400, want 1500; host interface h does not exist in /y"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
