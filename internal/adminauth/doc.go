// Package adminauth guards the admin surfaces of the tiers (/metrics on
// logic's admin listener, connsrv's and the notifier's HTTP listener): a
// bearer token loaded from configuration or a file, the rule that such a
// listener beyond loopback needs one, and a constant-time check of the
// Authorization header. It is a leaf package.
package adminauth
