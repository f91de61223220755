package openflow

import (
	"bytes"
	"context"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ovsnet/ovsnet/internal/testenv"
)

// ofctl runs ovs-ofctl with args and returns its standard output; a failure
// fails the test with ovs-ofctl's error output.
func ofctl(t *testing.T, args ...string) string {
	t.Helper()
	testenv.RequireCommands(t, "ovs-ofctl")
	path, err := testenv.LookPath("ovs-ofctl")
	if err != nil {
		t.Fatalf("find ovs-ofctl: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ovs-ofctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// ofpPrint asks OVS to decode b.
func ofpPrint(t *testing.T, b []byte) string {
	t.Helper()
	return ofctl(t, "ofp-print", hex.EncodeToString(b))
}

// parseHexDump reads the bytes of an ovs-ofctl hex dump ("00000000  04 0e
// 00 68 ...-... |...h|") and ignores every other line.
func parseHexDump(t *testing.T, out string) []byte {
	t.Helper()
	var b []byte
	for _, line := range strings.Split(out, "\n") {
		if len(line) < 10 || line[8:10] != "  " {
			continue
		}
		if _, err := hex.DecodeString(line[:8]); err != nil {
			continue
		}
		body, _, _ := strings.Cut(line[10:], "|")
		for _, f := range strings.Fields(strings.ReplaceAll(body, "-", " ")) {
			v, err := hex.DecodeString(f)
			if err != nil || len(v) != 1 {
				t.Fatalf("bad hex dump line %q", line)
			}
			b = append(b, v[0])
		}
	}
	return b
}

// ovsEncode has ovs-ofctl encode one ovs-ofctl command ("parse-flow",
// "parse-group") for OpenFlow 1.3 and returns what it printed for the
// message and the message's bytes.
func ovsEncode(t *testing.T, command, text string) (string, []byte) {
	t.Helper()
	out := ofctl(t, "-O", "OpenFlow13", "-mmmmm", command, text)
	var printed []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "usable protocols") || strings.HasPrefix(line, "chosen ") {
			continue
		}
		if len(line) >= 10 && line[8:10] == "  " {
			break
		}
		printed = append(printed, line)
	}
	b := parseHexDump(t, out)
	if len(b) == 0 {
		t.Fatalf("ovs-ofctl %s %q printed no hex dump:\n%s", command, text, out)
	}
	return strings.Join(printed, "\n"), b
}

func hexString(b []byte) string { return hex.EncodeToString(b) }
