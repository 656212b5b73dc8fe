// Package proxyproto decodes the PROXY protocol header (HAProxy, versions 1
// and 2) that a load balancer terminating TLS in front of the connection
// tier sends first on every connection, so that the tier sees the client's
// address rather than the balancer's.
//
// Parse works on the bytes already buffered (an event loop's inbound
// buffer) and never allocates: it returns "need more" (n == 0, err == nil)
// for a header that is a valid prefix so far, the header and its length
// once complete, or an error as soon as the bytes cannot start a valid
// header.
//
// # Wire format
//
// Version 1 (text, at most MaxV1Size = 107 bytes including CRLF):
//
//	"PROXY TCP4 <src ip> <dst ip> <src port> <dst port>\r\n"
//	"PROXY TCP6 <src ip> <dst ip> <src port> <dst port>\r\n"
//	"PROXY UNKNOWN[ anything]\r\n"           (addresses unknown: Local)
//
// Single spaces; ports are decimal 0-65535 without sign; TCP4 takes
// dotted-quad IPv4 addresses, TCP6 IPv6 text addresses (no zone).
//
// Version 2 (binary, 16-byte header then Length bytes):
//
//	 0..11  signature \r\n\r\n\0\r\nQUIT\n
//	12      version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
//	13      family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX)
//	        | transport (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM)
//	14..15  Length, big endian: address block plus TLVs
//	INET:   src addr (4) dst addr (4) src port (2) dst port (2)
//	INET6:  src addr (16) dst addr (16) src port (2) dst port (2)
//	then TLVs up to Length, skipped (not validated)
//
// LOCAL (health checks from the balancer itself) and PROXY with family
// UNSPEC yield a Local header: the receiver keeps the socket's address.
// PROXY over UNIX or DGRAM is refused (this tier serves TCP only). Length
// is bounded by MaxV2Body.
//
// # Concurrency
//
// All functions are pure and safe for concurrent use.
//
// Tier: connsrv.
package proxyproto
