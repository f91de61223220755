// Command ovsnet is the ovsnet CNI plugin. Runtimes run it from their CNI bin
// directory (usually /opt/cni/bin); it forwards every request to the
// ovsnet-agent on the node.
package main

import "github.com/ovsnet/ovsnet/internal/cniplugin"

func main() {
	cniplugin.Main()
}
