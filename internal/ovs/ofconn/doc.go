// Package ofconn is ovsnet's OpenFlow controller connection to one bridge:
// it dials the bridge's management socket, negotiates OpenFlow 1.3, keeps
// the connection alive, reconnects with backoff, and offers request/reply,
// multipart, barrier, confirmed batches and bundles on top of the openflow
// codec. It feeds the port table (package ports): a PORT_DESC dump on every
// connect, then every PORT_STATUS.
//
// # Sessions
//
// Each successful connection and handshake is a Session, numbered by Seq.
// Everything OVS holds for a controller (flows do not survive an
// ovs-vswitchd restart; bundles die with their connection) belongs to one
// session, so every request belongs to one too: when the connection drops,
// the requests waiting on it fail at once with an error wrapping
// ErrDisconnected, and a request made while no session is up fails at once
// the same way. Callers that must wait for OVS call WaitSession and then
// work on that Session; when its Done channel closes they wait for the next
// one and resynchronise (a new Seq means OVS may have lost their state).
// The methods of Conn with the same names are shorthands for "the current
// session".
//
// # Handshake
//
// Per connection: HELLO offering only OpenFlow 1.3; FEATURES_REQUEST (the
// datapath id becomes Session.DatapathID, for a cross-check with OVSDB);
// SET_CONFIG and SET_ASYNC, because OVS sends no asynchronous message to a
// management connection until asked (PORT_STATUS for every reason, PACKET_IN
// for the controller action only, no FLOW_REMOVED), confirmed by a barrier;
// then a PORT_DESC dump that resets the port table. Only then is the
// session published. PORT_STATUS messages that arrive during the handshake
// are applied to the table in stream order, so the dump, which is newer,
// replaces them, and anything after the dump is applied after it.
//
// # Receive loop
//
// One goroutine per connection reads and dispatches messages in order. It
// never waits on a consumer: replies go to per-request buffered channels,
// PORT_STATUS goes to the port table (a mutex), PACKET_IN to an optional
// channel with a non-blocking send (dropped and counted when full).
// Unexpected messages are counted and logged at debug level; a message whose
// body cannot be decoded is logged and skipped (or fails the request it
// answers); any other read error ends the session.
//
// # Liveness
//
// OVS sends no keepalive on a management connection, and a stopped
// ovs-vswitchd keeps its socket open, so the connection probes: after
// EchoInterval without receiving anything it sends an ECHO_REQUEST, and if
// nothing at all arrives within DeadTimeout after that, the session ends
// with ErrDeadPeer. Writes are serialised and bounded by DeadTimeout of no
// progress, so a wedged peer cannot hang callers either; every call is
// also bounded by its context. A handshake runs under the same liveness
// rules and HandshakeTimeout; against a stopped ovs-vswitchd it fails and is
// retried with backoff until the daemon continues.
package ofconn
