// Package sockwatch turns "a daemon's unix socket appeared" into an event.
// OVS clients reconnect with a growing backoff while ovsdb-server or
// ovs-vswitchd is away; when the daemon comes back it creates its socket
// anew (unlinking a stale one first), and a watch on that name lets the
// client try again at once instead of at the next backoff tick. The backoff
// stays as pacing for a socket that exists but refuses; a normal restart
// never waits on it.
//
// It knows nothing of OVS and needs no privileges: it watches the socket's
// directory (inotify on Linux). Elsewhere, or when the directory does not
// exist yet, New fails and callers keep their backoff alone.
package sockwatch

import "errors"

// ErrNotSupported: this platform has no directory watch here.
var ErrNotSupported = errors.New("watching for socket creation is not supported on this platform")
