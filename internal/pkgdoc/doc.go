// Package pkgdoc holds only a test: it walks the whole module and fails when
// a Go package (commands included) has no package doc comment, or when a
// library package's comment does not start with "Package <name>".
//
// The house style asks for a doc.go per package stating its purpose,
// concurrency contract and tier; this test keeps that promise enforced.
// It has no API and no tier; nothing imports it.
package pkgdoc
