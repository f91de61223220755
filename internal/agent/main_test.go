package agent_test

import (
	"os"
	"testing"

	"github.com/ovsnet/ovsnet/internal/cnitest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cnitest.RemoveSharedPluginDir()
	os.Exit(code)
}
