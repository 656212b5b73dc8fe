package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/parley-chat/parley/adapters/directory"
	"github.com/parley-chat/parley/adapters/events"
	"github.com/parley-chat/parley/connsrv"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/logic"
	"github.com/parley-chat/parley/notifier"
	"github.com/parley-chat/parley/storage/backends"
)

// settings mirrors the layout of cmd/parley's fileConfig (package main,
// which cannot be imported): the sections and the component configs they
// embed. It only feeds knownEnv; a section missing here shows up as an
// "unknown setting" failure, never as a false pass.
type settings struct {
	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	Auth     auth.Config      `yaml:"auth"`
	Connsrv  connsrv.Config   `yaml:"connsrv"`
	Logic    logic.Config     `yaml:"logic"`
	Store    backends.Config  `yaml:"store"`
	Redis    directory.Config `yaml:"redis"`
	Kafka    events.Config    `yaml:"kafka"`
	Notifier notifier.Config  `yaml:"notifier"`
}

// knownEnv returns every PARLEY_<SECTION>_<KEY> name the binary reads
// (cmd/internal/confload.Env: the dotted path upper-cased, dots as '_').
func knownEnv() map[string]bool {
	names := map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || tag == "" || tag == "-" {
				continue
			}
			if prefix+tag == "store.cql" {
				continue // the old name of store.scylla: read, but not for new files
			}
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeFor[time.Duration]() {
				walk(sf.Type, prefix+tag+".")
				continue
			}
			p := strings.NewReplacer(".", "_", "-", "_").Replace(prefix + tag)
			names["PARLEY_"+strings.ToUpper(p)] = true
		}
	}
	walk(reflect.TypeFor[settings](), "")
	return names
}

// Drain windows the stop timeouts must exceed (see deploy/README.md):
// connsrv spreads goaway + 1001 over its drain window (10s), then waits up
// to 2s for the closes and 1s for the link flush; logic spreads goaway
// over 2s, waits for in-flight store writes (store_timeout 5s) and flushes
// Kafka (10s); the notifier stops its consumer.
var minStop = map[string]time.Duration{
	"connsrv":  13 * time.Second,
	"logic":    20 * time.Second,
	"notifier": 10 * time.Second,
}

// A k8s object as decoded YAML.
type object = map[string]any

// get walks a path of map keys and list indexes ("spec", "template", 0).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func strMap(v any, path ...any) map[string]string {
	m, _ := get(v, path...).(map[string]any)
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func num(v any, path ...any) int {
	switch n := get(v, path...).(type) {
	case uint64:
		return int(n)
	case int64:
		return int(n)
	case int:
		return n
	case float64:
		return int(n)
	}
	return -1
}

// decodeAll decodes every YAML document of a file.
func decodeAll(t *testing.T, path string) []object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []object
	for {
		var doc object
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: cannot parse YAML: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// k8sFiles lists every YAML file under k8s/.
func k8sFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("k8s", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("got no YAML files under k8s/, want the example manifests")
	}
	return files
}

// manifests decodes every k8s object, each tagged with its file.
type manifest struct {
	file string
	obj  object
}

func manifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	for _, f := range k8sFiles(t) {
		for _, d := range decodeAll(t, f) {
			out = append(out, manifest{f, d})
		}
	}
	return out
}

func find(ms []manifest, kind, name string) object {
	for _, m := range ms {
		if str(m.obj, "kind") == kind && str(m.obj, "metadata", "name") == name {
			return m.obj
		}
	}
	return nil
}

func workloads(ms []manifest) []object {
	var out []object
	for _, m := range ms {
		switch str(m.obj, "kind") {
		case "Deployment", "StatefulSet":
			out = append(out, m.obj)
		}
	}
	return out
}

// matches reports whether every selector label is among labels.
func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func podLabels(w object) map[string]string {
	return strMap(w, "spec", "template", "metadata", "labels")
}

func containers(w object) []any { return list(w, "spec", "template", "spec", "containers") }

func TestYAMLParses(t *testing.T) {
	tests := []struct{ file string }{{"docker/compose.yaml"}}
	for _, f := range k8sFiles(t) {
		tests = append(tests, struct{ file string }{f})
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			docs := decodeAll(t, tt.file)
			if len(docs) == 0 {
				t.Fatalf("got no documents in %s, want at least one", tt.file)
			}
			if !strings.HasPrefix(tt.file, "k8s") {
				return
			}
			for i, d := range docs {
				for _, key := range []string{"apiVersion", "kind"} {
					if str(d, key) == "" {
						t.Errorf("document %d: got no %s, want one", i, key)
					}
				}
				if str(d, "metadata", "name") == "" {
					t.Errorf("document %d (%s): got no metadata.name, want one", i, str(d, "kind"))
				}
				if ns := str(d, "metadata", "namespace"); str(d, "kind") != "Namespace" && ns != "parley" {
					t.Errorf("%s %s: got namespace %q, want parley", str(d, "kind"), str(d, "metadata", "name"), ns)
				}
			}
		})
	}
}

// TestK8sReferences checks that the objects refer to each other
// consistently: selectors, ports, ConfigMaps, Secret keys, scale targets,
// drain windows, environment names and the logic node list.
func TestK8sReferences(t *testing.T) {
	ms := manifests(t)
	known := knownEnv()
	secret := find(ms, "Secret", "parley-secrets")
	if secret == nil {
		t.Fatal("got no Secret parley-secrets, want the example")
	}

	for _, w := range workloads(ms) {
		name := str(w, "metadata", "name")
		t.Run(str(w, "kind")+"/"+name, func(t *testing.T) {
			if sel := strMap(w, "spec", "selector", "matchLabels"); !matches(sel, podLabels(w)) {
				t.Errorf("got selector %v, want it to match pod labels %v", sel, podLabels(w))
			}
			grace := num(w, "spec", "template", "spec", "terminationGracePeriodSeconds")
			for _, c := range containers(w) {
				tier := str(c, "args", 0)
				if _, ok := minStop[tier]; !ok {
					t.Fatalf("container %s: got args[0] %q, want a tier subcommand", str(c, "name"), tier)
				}
				ports := map[string]bool{}
				for _, p := range list(c, "ports") {
					ports[str(p, "name")] = true
				}
				for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
					if get(c, probe) == nil {
						continue
					}
					if p := str(c, probe, "httpGet", "port"); !ports[p] {
						t.Errorf("%s: got port %q, want a named container port", probe, p)
					}
				}
				for _, probe := range []string{"readinessProbe", "livenessProbe"} {
					if get(c, probe) == nil {
						t.Errorf("got no %s, want one", probe)
					}
				}
				preStop := num(c, "lifecycle", "preStop", "sleep", "seconds")
				if preStop < 0 {
					preStop = 0
				}
				want := preStop + int(minStop[tier]/time.Second)
				if grace < want {
					t.Errorf("got terminationGracePeriodSeconds %d, want at least %d (preStop %ds + drain)", grace, want, preStop)
				}
				for _, e := range list(c, "env") {
					n := str(e, "name")
					if strings.HasPrefix(n, "PARLEY_") && !known[n] {
						t.Errorf("env %s: got a name that is no setting, want PARLEY_<SECTION>_<KEY> of a real key", n)
					}
					if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
						if str(ref, "name") != "parley-secrets" {
							t.Errorf("env %s: got Secret %q, want parley-secrets", n, str(ref, "name"))
						}
						if _, ok := strMap(secret, "stringData")[str(ref, "key")]; !ok {
							t.Errorf("env %s: got key %q, want a key of the example Secret", n, str(ref, "key"))
						}
					}
				}
			}
			for _, v := range list(w, "spec", "template", "spec", "volumes") {
				if cm := str(v, "configMap", "name"); cm != "" && find(ms, "ConfigMap", cm) == nil {
					t.Errorf("volume %s: got ConfigMap %q, want an existing one", str(v, "name"), cm)
				}
			}
			if str(w, "kind") == "StatefulSet" {
				svc := find(ms, "Service", str(w, "spec", "serviceName"))
				if svc == nil || str(svc, "spec", "clusterIP") != "None" {
					t.Errorf("got serviceName %q, want a headless Service", str(w, "spec", "serviceName"))
				}
			}
		})
	}

	for _, m := range ms {
		kind, name := str(m.obj, "kind"), str(m.obj, "metadata", "name")
		switch kind {
		case "Service":
			sel := strMap(m.obj, "spec", "selector")
			var targets []object
			for _, w := range workloads(ms) {
				if matches(sel, podLabels(w)) {
					targets = append(targets, w)
				}
			}
			if len(targets) == 0 {
				t.Errorf("Service %s: got selector %v matching no workload, want one", name, sel)
			}
			for _, p := range list(m.obj, "spec", "ports") {
				tp := str(p, "targetPort")
				for _, w := range targets {
					found := false
					for _, c := range containers(w) {
						for _, cp := range list(c, "ports") {
							found = found || str(cp, "name") == tp
						}
					}
					if !found {
						t.Errorf("Service %s: got targetPort %q, want a port name of %s", name, tp, str(w, "metadata", "name"))
					}
				}
			}
		case "PodDisruptionBudget":
			sel := strMap(m.obj, "spec", "selector", "matchLabels")
			if !slices.ContainsFunc(workloads(ms), func(w object) bool { return matches(sel, podLabels(w)) }) {
				t.Errorf("PodDisruptionBudget %s: got selector %v matching no workload, want one", name, sel)
			}
		case "HorizontalPodAutoscaler":
			ref := get(m.obj, "spec", "scaleTargetRef")
			if find(ms, str(ref, "kind"), str(ref, "name")) == nil {
				t.Errorf("HorizontalPodAutoscaler %s: got target %s/%s, want an existing workload", name, str(ref, "kind"), str(ref, "name"))
			}
		case "ServiceMonitor":
			sel := strMap(m.obj, "spec", "selector", "matchLabels")
			var n int
			for _, s := range ms {
				if str(s.obj, "kind") == "Service" && matches(sel, strMap(s.obj, "metadata", "labels")) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("ServiceMonitor %s: got %d Services matching %v, want 1 (no pod scraped twice)", name, n, sel)
			}
		}
	}

	t.Run("logic node list", func(t *testing.T) { checkLogicNodes(t, ms) })
}

// checkLogicNodes checks that connsrv.logic_addrs and logic.cluster.peers
// name exactly the StatefulSet's pods at the advertise address each pod
// sets for itself.
func checkLogicNodes(t *testing.T, ms []manifest) {
	t.Helper()
	sts := find(ms, "StatefulSet", "parley-logic")
	if sts == nil {
		t.Fatal("got no StatefulSet parley-logic, want one")
	}
	var advertise string
	for _, e := range list(sts, "spec", "template", "spec", "containers", 0, "env") {
		if str(e, "name") == "PARLEY_LOGIC_CLUSTER_ADVERTISE" {
			advertise = str(e, "value")
		}
	}
	if !strings.Contains(advertise, "$(PARLEY_LOGIC_NODE_ID)") {
		t.Fatalf("got advertise %q, want it built from $(PARLEY_LOGIC_NODE_ID)", advertise)
	}
	var want []any
	for i := range num(sts, "spec", "replicas") {
		want = append(want, strings.ReplaceAll(advertise, "$(PARLEY_LOGIC_NODE_ID)", fmt.Sprintf("%s-%d", str(sts, "metadata", "name"), i)))
	}
	tests := []struct {
		configMap, file string
		path            []any
	}{
		{"parley-connsrv-config", "connsrv.yaml", []any{"connsrv", "logic_addrs"}},
		{"parley-logic-config", "logic.yaml", []any{"logic", "cluster", "peers"}},
	}
	for _, tt := range tests {
		var cfg object
		if err := yaml.Unmarshal([]byte(str(find(ms, "ConfigMap", tt.configMap), "data", tt.file)), &cfg); err != nil {
			t.Fatalf("%s: %v", tt.configMap, err)
		}
		if got := list(cfg, tt.path...); !reflect.DeepEqual(got, want) {
			t.Errorf("%s %v: got %v, want %v (one per StatefulSet replica)", tt.configMap, tt.path, got, want)
		}
	}
}

// unit is a parsed systemd unit: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	var section string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: got line %q, want key=value in a section", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

var execRE = regexp.MustCompile(`^/usr/local/bin/parley (connsrv|logic|notifier) -config (/etc/parley/[a-z%-]+\.yaml)$`)

func unitFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("systemd/*.service")
	if err != nil || len(files) == 0 {
		t.Fatalf("got units %v (%v), want the systemd units", files, err)
	}
	return files
}

// unitTier returns the subcommand a unit's ExecStart runs.
func unitTier(t *testing.T, u unit) string {
	t.Helper()
	exec, _ := u.last("Service", "ExecStart")
	m := execRE.FindStringSubmatch(exec)
	if m == nil {
		t.Fatalf("got ExecStart %q, want /usr/local/bin/parley <tier> -config /etc/parley/<tier>.yaml", exec)
	}
	return m[1]
}

func TestSystemdUnits(t *testing.T) {
	required := map[string]string{ // key -> required value ("" = empty)
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"PrivateTmp":            "yes",
		"CapabilityBoundingSet": "",
		"Restart":               "on-failure",
		"KillSignal":            "SIGTERM",
	}
	for _, file := range unitFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			u := parseUnit(t, file)
			tier := unitTier(t, u)
			exec, _ := u.last("Service", "ExecStart")
			cfg := execRE.FindStringSubmatch(exec)[2]
			for k, want := range required {
				if got, ok := u.last("Service", k); !ok || got != want {
					t.Errorf("%s: got %q (set: %v), want %q", k, got, ok, want)
				}
			}
			if dyn, _ := u.last("Service", "DynamicUser"); dyn != "yes" {
				if user, _ := u.last("Service", "User"); user != "parley" {
					t.Errorf("got DynamicUser %q and User %q, want DynamicUser=yes or User=parley", dyn, user)
				}
			}
			if fams, _ := u.last("Service", "RestrictAddressFamilies"); !strings.Contains(fams, "AF_INET") {
				t.Errorf("RestrictAddressFamilies: got %q, want the IP families", fams)
			}
			env, _ := u.last("Service", "EnvironmentFile")
			if want := strings.TrimSuffix(cfg, ".yaml") + ".env"; env != want {
				t.Errorf("EnvironmentFile: got %q, want %q", env, want)
			}
			if pre, _ := u.last("Service", "ExecStartPre"); pre != exec+" -check-config" {
				t.Errorf("ExecStartPre: got %q, want %q", pre, exec+" -check-config")
			}
			stop, _ := u.last("Service", "TimeoutStopSec")
			if d, err := time.ParseDuration(stop); err != nil || d <= minStop[tier] {
				t.Errorf("TimeoutStopSec: got %q, want longer than the %s drain window %v", stop, tier, minStop[tier])
			}
			if nofile, _ := u.last("Service", "LimitNOFILE"); tier == "connsrv" && nofile != "1048576" {
				t.Errorf("LimitNOFILE: got %q, want 1048576", nofile)
			}
			if _, ok := u.last("Install", "WantedBy"); !ok {
				t.Error("got no [Install] WantedBy, want multi-user.target")
			}
		})
	}
}

var envNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// envFile reads KEY=VALUE lines; commented assignments ("# KEY=VALUE")
// are returned too (as documentation they must name real settings), with
// commented set to true.
func envFile(t *testing.T, path string) (vars map[string]string, commented map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars, commented = map[string]string{}, map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		isComment := strings.HasPrefix(line, "#")
		line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		k, v, ok := strings.Cut(line, "=")
		if !ok || !envNameRE.MatchString(k) {
			if !isComment && line != "" {
				t.Fatalf("%s: got line %q, want KEY=VALUE or a comment", path, line)
			}
			continue
		}
		if isComment {
			commented[k] = true
			continue
		}
		vars[k] = v
	}
	return vars, commented
}

func TestSystemdEnvFiles(t *testing.T) {
	known := knownEnv()
	files, _ := filepath.Glob("systemd/env/*.env.example")
	if len(files) != 3 {
		t.Fatalf("got env examples %v, want one per tier", files)
	}
	for _, f := range files {
		vars, commented := envFile(t, f)
		for k := range commented {
			vars[k] = ""
		}
		for k := range vars {
			if !known[k] {
				t.Errorf("%s: got %s, want PARLEY_<SECTION>_<KEY> of a real setting", f, k)
			}
		}
	}
}

// Secrets the tests put in place of the Secret's placeholders.
type secrets struct {
	auth, link, vapidPublic, vapidPrivate string
}

// dummySecrets makes a VAPID pair with the binary itself.
func dummySecrets(t *testing.T, bin string) secrets {
	t.Helper()
	out, err := exec.Command(bin, "notifier", "-gen-vapid").Output()
	if err != nil {
		t.Fatalf("parley notifier -gen-vapid: %v", err)
	}
	s := secrets{auth: "deploy-test-secret-0123456789abcdef0123456789", link: "deploy-test-link-secret-0123456789abcdef0123"}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		switch k {
		case "vapid_public_key":
			s.vapidPublic = v
		case "vapid_private_key":
			s.vapidPrivate = v
		}
	}
	if s.vapidPublic == "" || s.vapidPrivate == "" {
		t.Fatalf("parley notifier -gen-vapid: got %q, want a key pair", out)
	}
	return s
}

func (s secrets) forKey(key string) string {
	switch key {
	case "auth-secret":
		return s.auth
	case "link-secret":
		return s.link
	case "admin-token":
		return "deploy-test-admin-token-0123456789abcdef0123"
	case "vapid-public-key":
		return s.vapidPublic
	case "vapid-private-key":
		return s.vapidPrivate
	}
	return ""
}

// buildParley builds ./cmd/parley into dir.
func buildParley(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "parley")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/parley")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/parley: %v\n%s", err, out)
	}
	return bin
}

// checkConfig runs `parley <tier> -config <file> -check-config` with env
// on top of a clean environment (no PARLEY_* from the caller).
func checkConfig(t *testing.T, bin, tier, file string, env map[string]string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, tier, "-config", file, "-check-config")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// podEnv resolves a container's env the way the kubelet would for pod
// podName, with secret values from sec (placeholders when sec is zero).
func podEnv(t *testing.T, c any, podName string, sec secrets, secret object) map[string]string {
	t.Helper()
	env := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range list(c, "env") {
		name := str(e, "name")
		switch {
		case get(e, "value") != nil:
			env[name] = ref.ReplaceAllStringFunc(str(e, "value"), func(m string) string {
				if v, ok := env[ref.FindStringSubmatch(m)[1]]; ok {
					return v
				}
				return m // the kubelet leaves unknown references as they are
			})
		case str(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.name":
			env[name] = podName
		case str(e, "valueFrom", "fieldRef", "fieldPath") == "metadata.namespace":
			env[name] = "parley"
		case get(e, "valueFrom", "secretKeyRef") != nil:
			key := str(e, "valueFrom", "secretKeyRef", "key")
			if v := sec.forKey(key); v != "" {
				env[name] = v
			} else {
				env[name] = strMap(secret, "stringData")[key]
			}
		default:
			t.Fatalf("env %s: got a source this test does not resolve, want value, fieldRef or secretKeyRef", name)
		}
	}
	return env
}

// TestBinary runs the shipped configs, units and env through the real
// binary, built once.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ./cmd/parley; skipped with -short")
	}
	bin := buildParley(t, t.TempDir())
	sec := dummySecrets(t, bin)
	t.Run("k8s", func(t *testing.T) { testK8sConfigs(t, bin, sec) })
	t.Run("compose", func(t *testing.T) { testComposeConfigs(t, bin) })
	t.Run("systemd", func(t *testing.T) { testSystemdBinary(t, bin, sec) })
	t.Run("systemd-analyze", func(t *testing.T) { testSystemdAnalyze(t, bin) })
}

// testK8sConfigs checks every ConfigMap config with the environment its
// workload sets, once with working secrets (must pass) and once with the
// example Secret's placeholders (must fail where the Secret says so).
func testK8sConfigs(t *testing.T, bin string, sec secrets) {
	ms := manifests(t)
	secret := find(ms, "Secret", "parley-secrets")
	checked := map[string]bool{}
	for _, w := range workloads(ms) {
		for _, c := range containers(w) {
			args := list(c, "args")
			tier := str(c, "args", 0)
			if len(args) != 3 || str(c, "args", 1) != "-config" {
				t.Fatalf("%s: got args %v, want [<tier> -config <file>]", str(w, "metadata", "name"), args)
			}
			path := str(c, "args", 2)
			// The ConfigMap behind the mount that holds path.
			var data string
			for _, vm := range list(c, "volumeMounts") {
				rel, err := filepath.Rel(str(vm, "mountPath"), path)
				if err != nil || strings.HasPrefix(rel, "..") {
					continue
				}
				for _, v := range list(w, "spec", "template", "spec", "volumes") {
					if str(v, "name") == str(vm, "name") {
						cm := str(v, "configMap", "name")
						data = str(find(ms, "ConfigMap", cm), "data", rel)
						checked[cm+"/"+rel] = true
					}
				}
			}
			if data == "" {
				t.Fatalf("%s: got no ConfigMap entry for %s, want one mounted", str(w, "metadata", "name"), path)
			}
			file := filepath.Join(t.TempDir(), filepath.Base(path))
			if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			pod := str(w, "metadata", "name") + "-0"
			t.Run(tier, func(t *testing.T) {
				out, err := checkConfig(t, bin, tier, file, podEnv(t, c, pod, sec, secret))
				if err != nil || !strings.Contains(out, "configuration ok") {
					t.Errorf("parley %s -check-config: got %v\n%s\nwant configuration ok", tier, err, out)
				}
			})
			t.Run(tier+"/placeholder-secret", func(t *testing.T) {
				env := podEnv(t, c, pod, secrets{}, secret)
				if env["PARLEY_AUTH_SECRET"] == "" && env["PARLEY_NOTIFIER_VAPID_PRIVATE_KEY"] == "" {
					t.Skip("no secret that fails on purpose")
				}
				if out, err := checkConfig(t, bin, tier, file, env); err == nil {
					t.Errorf("parley %s -check-config with the example Secret: got success\n%s\nwant invalid configuration", tier, out)
				}
			})
		}
	}
	for _, m := range ms {
		if str(m.obj, "kind") != "ConfigMap" {
			continue
		}
		for k := range strMap(m.obj, "data") {
			if id := str(m.obj, "metadata", "name") + "/" + k; !checked[id] {
				t.Errorf("ConfigMap entry %s: got no workload mounting it, want every config checked", id)
			}
		}
	}
}

// testComposeConfigs checks each Parley service of compose.yaml: its
// mounted config with its environment.
func testComposeConfigs(t *testing.T, bin string) {
	docs := decodeAll(t, "docker/compose.yaml")
	services, _ := get(docs[0], "services").(map[string]any)
	known := knownEnv()
	var n int
	for name, svc := range services {
		tier := str(svc, "command", 0)
		if _, ok := minStop[tier]; !ok {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			path := str(svc, "command", 2)
			var host string
			for _, v := range list(svc, "volumes") {
				src, rest, _ := strings.Cut(fmt.Sprint(v), ":")
				dst, _, _ := strings.Cut(rest, ":")
				if rel, err := filepath.Rel(dst, path); err == nil && !strings.HasPrefix(rel, "..") {
					host = filepath.Join("docker", src, rel)
				}
			}
			if host == "" {
				t.Fatalf("got no volume holding %s, want one", path)
			}
			env := strMap(svc, "environment")
			for k := range env {
				if strings.HasPrefix(k, "PARLEY_") && !known[k] {
					t.Errorf("environment %s: got a name that is no setting, want PARLEY_<SECTION>_<KEY> of a real key", k)
				}
			}
			out, err := checkConfig(t, bin, tier, host, env)
			if err != nil || !strings.Contains(out, "configuration ok") {
				t.Errorf("parley %s -config %s -check-config: got %v\n%s\nwant configuration ok", tier, host, err, out)
			}
		})
	}
	if n != 5 {
		t.Errorf("got %d Parley services in compose.yaml, want 5 (2 logic, 2 connsrv, notifier)", n)
	}
}

// testSystemdBinary checks that every unit's subcommand exists and that
// the configs the units suggest, with the env examples (placeholders
// replaced), pass -check-config.
func testSystemdBinary(t *testing.T, bin string, sec secrets) {
	baseConfig := map[string]string{ // what the unit comments say to install
		"connsrv":  "../configs/connsrv.yaml",
		"logic":    "../configs/logic.yaml",
		"notifier": "../configs/fleet/notifier.yaml",
	}
	for _, file := range unitFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			tier := unitTier(t, parseUnit(t, file))
			out, err := exec.Command(bin, tier, "-h").CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			// -h prints the flags and exits 0, or 1 with "help requested".
			if !strings.Contains(string(out), "-check-config") || (err != nil && !strings.Contains(string(out), "help requested")) {
				t.Errorf("parley %s -h: got %v\n%s\nwant its usage", tier, err, out)
			}
			vars, _ := envFile(t, "systemd/env/"+tier+".env.example")
			for k, v := range vars {
				if v != "REPLACE_ME" {
					continue
				}
				switch k {
				case "PARLEY_AUTH_SECRET":
					vars[k] = sec.auth
				case "PARLEY_LOGIC_LINK_SECRET", "PARLEY_CONNSRV_LINK_SECRET":
					vars[k] = sec.link
				case "PARLEY_CONNSRV_METRICS_TOKEN", "PARLEY_NOTIFIER_METRICS_TOKEN", "PARLEY_LOGIC_ADMIN_TOKEN":
					vars[k] = "deploy-test-admin-token-0123456789abcdef0123"
				case "PARLEY_NOTIFIER_VAPID_PUBLIC_KEY":
					vars[k] = sec.vapidPublic
				case "PARLEY_NOTIFIER_VAPID_PRIVATE_KEY":
					vars[k] = sec.vapidPrivate
				default:
					t.Fatalf("%s: got placeholder %s this test cannot fill, want a known one", tier, k)
				}
			}
			out2, err := checkConfig(t, bin, tier, baseConfig[tier], vars)
			if err != nil || !strings.Contains(out2, "configuration ok") {
				t.Errorf("parley %s -config %s -check-config with env/%s.env.example: got %v\n%s\nwant configuration ok", tier, baseConfig[tier], tier, err, out2)
			}
		})
	}
}

// testSystemdAnalyze runs `systemd-analyze verify` on the units inside a
// scratch root holding the host's system units and the binary at
// /usr/local/bin/parley. Any output (unknown keys, bad values) fails.
func testSystemdAnalyze(t *testing.T, bin string) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	var sysUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "sysinit.target")); err == nil {
			sysUnits = d
			break
		}
	}
	if sysUnits == "" {
		t.Skip("no system units (sysinit.target) to verify against")
	}
	root := t.TempDir()
	copyFile := func(src, dst string, mode os.FileMode) {
		t.Helper()
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	err = filepath.WalkDir(sysUnits, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		copyFile(p, filepath.Join(root, "usr/lib/systemd/system", strings.TrimPrefix(p, sysUnits)), 0o644)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	copyFile(bin, filepath.Join(root, "usr/local/bin/parley"), 0o755)
	var names []string
	for _, f := range unitFiles(t) {
		copyFile(f, filepath.Join(root, "etc/systemd/system", filepath.Base(f)), 0o644)
		name := filepath.Base(f)
		if strings.HasSuffix(name, "@.service") {
			name = strings.TrimSuffix(name, "@.service") + "@1.service"
		}
		names = append(names, name)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--root=" + root}, names...)...)
	cmd.Dir = filepath.Join(root, "etc/systemd/system")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: got %v\n%s\nwant no error and no warning", strings.Join(names, " "), err, out)
	}
}

// TestSysctlFile checks the sysctl example is key = value lines.
func TestSysctlFile(t *testing.T) {
	data, err := os.ReadFile("systemd/sysctl.d/90-parley-connsrv.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fs.file-max", "net.ipv4.ip_local_port_range", "net.core.somaxconn", "net.ipv4.tcp_mem"}
	got := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(v) == "" {
			t.Errorf("line %d: got %q, want key = value", i+1, line)
			continue
		}
		for _, f := range strings.Fields(v) {
			if _, err := strconv.Atoi(f); err != nil {
				t.Errorf("line %d: got value %q, want numbers", i+1, v)
			}
		}
		got[strings.TrimSpace(k)] = true
	}
	for _, k := range want {
		if !got[k] {
			t.Errorf("got no %s, want it set", k)
		}
	}
}
