// Package deploy holds what operators need to run Parley's tiers as a
// fleet: systemd units (deploy/systemd), a container image and a local
// multi-container fleet (deploy/docker), and example Kubernetes manifests
// (deploy/k8s). See deploy/README.md.
//
// The package has no code of its own. Its test keeps the shipped files
// honest: every YAML file parses, every Kubernetes object names its
// apiVersion, kind and metadata.name, every reference between objects
// resolves, every Parley config embedded in a ConfigMap or mounted by the
// compose file passes the real binary's -check-config with the environment
// the manifests set, every PARLEY_* variable names a real setting, and
// every systemd unit runs a subcommand that exists. The test builds
// ./cmd/parley once; -short skips the parts that need the binary.
//
// Nothing here runs a fleet: the binaries themselves are tested by e2e/
// and the integration suites.
package deploy
