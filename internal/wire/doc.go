// Package wire defines every name herd puts on the wire: subjects, headers,
// stream, consumer and bucket names, priorities, the subject-safe model
// encoding and the error reply body. Nothing else in herd spells these
// strings; docs/protocol.md documents them for agents in any language.
package wire
