// Package ovstest starts a real Open vSwitch for integration tests: a
// sandboxed ovsdb-server and ovs-vswitchd (userspace datapath) in a temporary
// directory and network namespace of their own, torn down when the test ends,
// also when it fails.
package ovstest
