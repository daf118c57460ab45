// Package wire implements nexo's native binary protocol, version 1.
//
// A connection carries a sequence of frames in each direction. Every frame
// starts with a 12-byte header, all integers big-endian:
//
//	offset size field
//	0      4    length   bytes after this field (8 + body), 8..max frame
//	4      1    version  always 1
//	5      1    type     see [Type]
//	6      2    flags    see [Flags]; only FlagDeadline exists in version 1
//	8      4    id       request id for REQUEST/RESPONSE/ERROR, echoed by PONG
//	12     ...  body     depends on the type
//
// The flow of a connection:
//
//	client                         server
//	HELLO {"name":..}      ->
//	                       <-      WELCOME {"client_id":..,"heartbeat_ms":..}
//	REQUEST id=1 math.add  ->
//	REQUEST id=2 math.div  ->      (pipelined: no need to wait)
//	                       <-      RESPONSE id=2
//	                       <-      RESPONSE id=1 (any order)
//	                       <-      PING id=7
//	PONG id=7              ->
//	GOODBYE                ->      (server finishes in-flight work, then closes)
//
// The package has no goroutines and no sockets: both the server and the
// client library build on it. Encoders append to a caller's buffer and the
// [Reader] hands out frames whose bodies point into its own buffer, so the
// request and response paths allocate nothing.
//
// The full contract, including the decisions this implementation takes where
// the specification is silent, is docs/protocol.md in the repository.
package wire
