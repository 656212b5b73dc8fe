// Package pkgdoc holds only tests: they walk the whole module and fail
// when a Go package (commands included) has no package doc comment, when
// a library package's comment does not start with "Package <name>", or
// when a package imports one the tier rules forbid (tiers_test.go holds
// the rules of ARCHITECTURE.md as a table).
//
// The house style asks for a doc.go per package stating its purpose,
// concurrency contract and tier; this test keeps that promise enforced.
// It has no API and no tier; nothing imports it.
package pkgdoc
