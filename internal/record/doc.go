// Package record holds Parley's domain records: messages, chats, chat-list
// entries and the identifiers that name them, plus the sentinel errors of the
// storage contract. It is a leaf package: it imports nothing else of Parley's,
// so connsrv, logic, storage and the client SDK can all share it.
//
// Everything here is plain data; values are safe to copy and to share
// read-only between goroutines.
package record
