package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/pebble"
	"github.com/parley-chat/parley/storage/scylla"
)

// Config is the store section of a logic node's or notifier's
// configuration: which backend, and each backend's settings.
type Config struct {
	// Backend names an entry of the table: pebble (embedded, one logic
	// node) or scylla (ScyllaDB or Cassandra, shared by a fleet). Default
	// pebble.
	Backend string `yaml:"backend"`
	// Pebble configures the embedded store.
	Pebble pebble.Config `yaml:"pebble"`
	// Scylla configures the ScyllaDB/Cassandra store.
	Scylla scylla.Config `yaml:"scylla"`
	// CQL is the old name of Scylla, still read (with a warning) for one
	// release: Normalize moves it.
	CQL scylla.Config `yaml:"cql"`
}

// Default is the embedded store with every backend's defaults.
func Default() Config {
	return Config{Backend: "pebble", Pebble: pebble.Default(), Scylla: scylla.Default(), CQL: scylla.Default()}
}

// Backend is one entry of the table.
type Backend struct {
	// Name is the value of store.backend, and the name of the backend's
	// section in Config.
	Name string
	// Shared is true for a store several logic nodes may use at once (a
	// fleet's); false for one a single process owns.
	Shared bool
	// Validate checks the backend's section of c.
	Validate func(c Config) error
	// Open opens the store c describes; the caller closes it.
	Open func(ctx context.Context, c Config, log *slog.Logger) (storage.Store, error)
}

// table is every backend Parley can run on: adding one is one entry here
// (and a section in Config).
var table = []Backend{
	{
		Name:     "pebble",
		Validate: func(c Config) error { return c.Pebble.Validate() },
		Open: func(_ context.Context, c Config, log *slog.Logger) (storage.Store, error) {
			st, err := pebble.Open(c.Pebble, log)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return st, nil
		},
	},
	{
		Name:     "scylla",
		Shared:   true,
		Validate: func(c Config) error { return c.Scylla.Validate() },
		Open: func(ctx context.Context, c Config, log *slog.Logger) (storage.Store, error) {
			st, err := scylla.Open(ctx, c.Scylla, log.With("component", "scylla"))
			if err != nil {
				return nil, err
			}
			return st, nil
		},
	},
}

// oldNames maps a backend's former name to its name; Normalize reads the
// old one with a warning for one release.
var oldNames = map[string]string{"cql": "scylla"}

// Names lists the backends, in table order.
func Names() []string {
	names := make([]string, len(table))
	for i, b := range table {
		names[i] = b.Name
	}
	return names
}

// Lookup returns the backend called name.
func Lookup(name string) (Backend, error) {
	for _, b := range table {
		if b.Name == name {
			return b, nil
		}
	}
	return Backend{}, fmt.Errorf("store.backend %q: want %s", name, strings.Join(Names(), " or "))
}

// Normalize moves settings given under their old names to the new ones
// and returns a warning for each (to log once a logger exists): backend
// cql is scylla, and the store.cql section is store.scylla. Settings under
// both names are an error, since one would be silently dropped.
func (c *Config) Normalize() (warnings []string, err error) {
	if n, ok := oldNames[c.Backend]; ok {
		warnings = append(warnings, fmt.Sprintf("store.backend: %s is the old name of %s; it is read for one more release, write %s", c.Backend, n, n))
		c.Backend = n
	}
	def := scylla.Default()
	if !reflect.DeepEqual(c.CQL, def) {
		if !reflect.DeepEqual(c.Scylla, def) {
			return warnings, errors.New("store.cql is the old name of store.scylla, and both are set: keep only store.scylla")
		}
		warnings = append(warnings, "store.cql is the old name of store.scylla (PARLEY_STORE_CQL_* of PARLEY_STORE_SCYLLA_*, -set store.cql.* of store.scylla.*); it is read for one more release, write store.scylla")
		c.Scylla, c.CQL = c.CQL, def
	}
	return warnings, nil
}

// Validate checks the backend's name and its section.
func (c Config) Validate() error {
	b, err := Lookup(c.Backend)
	if err != nil {
		return err
	}
	return b.Validate(c)
}

// Shared reports whether c's backend may be shared by several logic
// nodes; false for an unknown backend.
func (c Config) Shared() bool {
	b, err := Lookup(c.Backend)
	return err == nil && b.Shared
}

// Open opens the store c names.
func Open(ctx context.Context, c Config, log *slog.Logger) (storage.Store, error) {
	b, err := Lookup(c.Backend)
	if err != nil {
		return nil, err
	}
	st, err := b.Open(ctx, c, log)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", b.Name, err)
	}
	return st, nil
}
