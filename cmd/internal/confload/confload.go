package confload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// File decodes the YAML file at path into dst (a pointer to a struct
// holding defaults). Unknown keys are errors.
func File(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read config %s: %w", path, err)
	}
	return Bytes(path, data, dst)
}

// Bytes decodes YAML data (named name in errors) into dst.
func Bytes(name string, data []byte, dst any) error {
	if onlyComments(data) {
		return nil // an empty document keeps the defaults
	}
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField())
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file keeps the defaults
		}
		return fmt.Errorf("cannot load config %s:\n%s", name, yaml.FormatError(err, false, true))
	}
	return nil
}

// Env applies every environment variable named prefix + "_" + path (path in
// upper case, dots and dashes as underscores), for example
// PARLEY_CONNSRV_LISTEN for connsrv.listen.
func Env(prefix string, dst any) error {
	var errs []error
	for _, p := range Paths(dst) {
		name := prefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(p))
		if v, ok := os.LookupEnv(name); ok {
			if err := Set(dst, p, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// SetAll applies "path=value" assignments, reporting every bad one.
func SetAll(dst any, assignments []string) error {
	var errs []error
	for _, a := range assignments {
		p, v, ok := strings.Cut(a, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("-set %q: want path=value", a))
			continue
		}
		if err := Set(dst, strings.TrimSpace(p), v); err != nil {
			errs = append(errs, fmt.Errorf("-set %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Set assigns the string value to the field at the dotted YAML path.
// Lists take comma-separated values; durations use time.ParseDuration.
func Set(dst any, path, value string) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return errors.New("confload: dst must be a pointer to a struct")
	}
	v = v.Elem()
	parts := strings.Split(path, ".")
	for i, part := range parts {
		f, ok := fieldByTag(v, part)
		if !ok {
			return fmt.Errorf("unknown setting %q", strings.Join(parts[:i+1], "."))
		}
		v = f
		if i < len(parts)-1 && v.Kind() != reflect.Struct {
			return fmt.Errorf("setting %q is not a section", strings.Join(parts[:i+1], "."))
		}
	}
	return setValue(v, value)
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		if tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

var durationType = reflect.TypeOf(time.Duration(0))

func setValue(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("cannot parse duration %q: %w", s, err)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("cannot parse bool %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("cannot parse integer %q", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 0, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("cannot parse unsigned integer %q", s)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("cannot parse number %q", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set list of %s from a string", v.Type().Elem())
		}
		var items []string
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot set a %s from a string", v.Kind())
	}
	return nil
}

// Paths lists every settable dotted path of the struct dst points to.
func Paths(dst any) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || tag == "" || tag == "-" {
				continue
			}
			if sf.Type.Kind() == reflect.Struct && sf.Type != durationType {
				walk(sf.Type, prefix+tag+".")
				continue
			}
			out = append(out, prefix+tag)
		}
	}
	walk(reflect.TypeOf(dst).Elem(), "")
	sort.Strings(out)
	return out
}

func onlyComments(data []byte) bool {
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && string(line) != "---" {
			return false
		}
	}
	return true
}
