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
// and returns a warning for each old name used (to log once a logger
// exists): backend cql is scylla, and the store.cql section is
// store.scylla. It merges setting by setting, so a file may still use
// the old section while the environment or -set use the new one; the
// same setting under both names with different values is an error, since
// one would be silently dropped. A new-name setting equal to its default
// counts as not set (the config carries values, not which keys were
// given): to override an old-name setting with the default, drop the old
// one.
func (c *Config) Normalize() (warnings []string, err error) {
	if n, ok := oldNames[c.Backend]; ok {
		warnings = append(warnings, fmt.Sprintf("store.backend: %s is the old name of %s; it is read for one more release, write %s", c.Backend, n, n))
		c.Backend = n
	}
	def := scylla.Default()
	var moved []string
	var errs []error
	merge(reflect.ValueOf(&c.CQL).Elem(), reflect.ValueOf(&c.Scylla).Elem(), reflect.ValueOf(def), "", &moved, &errs)
	if len(moved) > 0 {
		warnings = append(warnings, fmt.Sprintf("store.cql is the old name of store.scylla (PARLEY_STORE_CQL_* of PARLEY_STORE_SCYLLA_*); it is read for one more release: write store.scylla.%s", strings.Join(moved, ", store.scylla.")))
	}
	c.CQL = def
	return warnings, errors.Join(errs...)
}

// merge moves each setting of old that differs from def into cur where
// cur still has the default, recursing into sections; path is the dotted
// name of old within store.cql.
func merge(old, cur, def reflect.Value, path string, moved *[]string, errs *[]error) {
	t := old.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		o, n, d := old.Field(i), cur.Field(i), def.Field(i)
		if f.Type.Kind() == reflect.Struct {
			merge(o, n, d, path+name+".", moved, errs)
			continue
		}
		switch {
		case reflect.DeepEqual(o.Interface(), d.Interface()):
		case reflect.DeepEqual(n.Interface(), d.Interface()), reflect.DeepEqual(n.Interface(), o.Interface()):
			n.Set(o)
			*moved = append(*moved, path+name)
		default:
			*errs = append(*errs, fmt.Errorf("store.cql.%s and store.scylla.%s are both set, to different values: store.cql is the old name; keep only store.scylla.%s", path+name, path+name, path+name))
		}
	}
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
