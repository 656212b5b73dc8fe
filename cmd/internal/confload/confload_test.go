package confload

import (
	"strings"
	"testing"
	"time"
)

type inner struct {
	Listen  string        `yaml:"listen"`
	Timeout time.Duration `yaml:"timeout"`
	Addrs   []string      `yaml:"addrs"`
	N       int           `yaml:"n"`
	Rate    float64       `yaml:"rate"`
	On      bool          `yaml:"on"`
}

type outer struct {
	Server inner  `yaml:"server"`
	Name   string `yaml:"name"`
}

func TestLoadAndOverride(t *testing.T) {
	c := outer{Server: inner{Listen: ":1", N: 3}}
	err := Bytes("t.yaml", []byte("name: x\nserver:\n  listen: \":2\"\n  timeout: 3s\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Listen != ":2" || c.Server.Timeout != 3*time.Second || c.Server.N != 3 || c.Name != "x" {
		t.Fatalf("got %+v", c)
	}
	t.Setenv("PX_SERVER_N", "7")
	if err := Env("PX", &c); err != nil {
		t.Fatal(err)
	}
	if err := SetAll(&c, []string{"server.addrs=a:1, b:2", "server.on=true", "server.rate=2.5"}); err != nil {
		t.Fatal(err)
	}
	if c.Server.N != 7 || len(c.Server.Addrs) != 2 || c.Server.Addrs[1] != "b:2" || !c.Server.On || c.Server.Rate != 2.5 {
		t.Fatalf("got %+v", c)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		set        []string
		want       string
	}{
		{"unknown key", "server:\n  lisen: x\n", nil, "lisen"},
		{"bad type", "server:\n  n: abc\n", nil, "cannot load config"},
		{"unknown path", "", []string{"server.nope=1"}, "unknown setting"},
		{"bad duration", "", []string{"server.timeout=3 parsecs"}, "duration"},
		{"no equals", "", []string{"server.n"}, "path=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c outer
			err := Bytes("t.yaml", []byte(tt.yaml), &c)
			if err == nil {
				err = SetAll(&c, tt.set)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	c := outer{Name: "d"}
	if err := Bytes("e.yaml", nil, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "d" {
		t.Fatalf("got %q, want d", c.Name)
	}
}

func FuzzBytes(f *testing.F) {
	f.Add([]byte("name: x\nserver:\n  listen: \":2\"\n"))
	f.Add([]byte("server: [1,2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c outer
		_ = Bytes("f.yaml", data, &c)
	})
}
