// Package openflow is ovsnet's OpenFlow 1.3 codec: the wire format of the
// messages a controller exchanges with Open vSwitch, including the Nicira
// extension actions and match fields OVS relies on (registers, conntrack,
// tunnels) and the ONF bundle extension (OpenFlow 1.3 form) used for atomic
// flow updates.
//
// The package only encodes and decodes; it opens no connection. A connection
// reads one message at a time with a Reader, which frames by the length in
// the header and never reads past the message, and writes with Encode or
// WriteMessage.
//
// Decoding is lenient where the stream can continue and strict where it
// cannot: a malformed header ends the stream (the framing is lost), while a
// message, action, instruction or match field the codec does not know is kept
// as raw bytes (Unknown, UnknownAction, UnknownInstruction, a Field with an
// unregistered FieldID) so the caller can log it and go on. A known message
// whose body is malformed yields a *DecodeError carrying the header and raw
// bytes; the next read is unaffected.
//
// Types mirror the wire values of OpenFlow 1.3; where a zero value would be
// a surprising wire value (buffer id 0, out_port 0), constructors such as
// NewFlowMod and NewPacketOut fill the "none" values in.
package openflow
