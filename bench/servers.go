package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// ServerSpec describes a logic node plus Connsrvs connection-node
// processes sharing one WebSocket port (SO_REUSEPORT) that bench starts
// for a run, all from the parley binary Exe.
type ServerSpec struct {
	Exe        string   // the parley binary
	ConfigArgs []string // -config and -set arguments every process gets
	Connsrvs   int      // connection-node processes
	Host       string   // loopback address to listen on; default 127.0.0.1
	Port       int      // shared WebSocket port
	HTTPBase   int      // connsrv i serves /metrics on HTTPBase+i
	LinkPort   int      // logic tier link
	LogicHTTP  int      // logic's admin listener (/metrics, /readyz); its HTTP API is off
	Dir        string   // store and logs
	Env        []string // extra environment (e.g. GOGC=50), for connsrv processes
	// ConnsrvNice is added to the nice value of the connsrv processes (0:
	// none). Dozens of them on a few cores take the CPU share of the one
	// logic node, which in a fleet has cores of its own; a positive value
	// lets logic keep up with the ramp.
	ConnsrvNice int
	// ConnsrvArgs go before ConfigArgs on the connsrv command lines, as
	// defaults that the configuration's own -set arguments override (e.g.
	// -set runtime.gc_percent=50, as configs/connsrv.yaml ships).
	ConnsrvArgs []string
	// LogicArgs are extra arguments for the logic node only (e.g. -set
	// debug.pprof_listen=...).
	LogicArgs []string
}

// ServerSet is a running ServerSpec.
type ServerSet struct {
	URL     string
	Servers []Server
	cmds    []*exec.Cmd
	exited  []chan struct{} // closed when cmds[i] has exited
	log     *slog.Logger
}

// StartServers starts the logic node, then the connection nodes, and waits
// until every one answers /readyz (connsrv is ready once its logic link is
// up).
func StartServers(ctx context.Context, spec ServerSpec, log *slog.Logger) (*ServerSet, error) {
	if spec.Host == "" {
		spec.Host = "127.0.0.1"
	}
	if spec.Connsrvs < 1 {
		return nil, errors.New("cannot start servers: need at least one connsrv")
	}
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", spec.Dir, err)
	}
	set := &ServerSet{URL: fmt.Sprintf("ws://%s:%d/ws", spec.Host, spec.Port), log: log}
	hp := func(p int) string { return spec.Host + ":" + strconv.Itoa(p) }
	start := func(name, role, metrics string, nice int, env []string, args ...string) error {
		logf, err := os.Create(filepath.Join(spec.Dir, name+".log"))
		if err != nil {
			return fmt.Errorf("cannot create log of %s: %w", name, err)
		}
		defer logf.Close()
		cmd := exec.Command(spec.Exe, args...)
		if nice > 0 {
			bin, err := exec.LookPath("nice")
			if err != nil {
				return fmt.Errorf("cannot start %s with nice %d: %w", name, nice, err)
			}
			// nice execs the server: the PID stays the server's.
			cmd = exec.Command(bin, append([]string{"-n", strconv.Itoa(nice), spec.Exe}, args...)...)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(os.Environ(), env...)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("cannot start %s: %w", name, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		set.cmds, set.exited = append(set.cmds, cmd), append(set.exited, exited)
		set.Servers = append(set.Servers, Server{Name: name, Role: role, PID: cmd.Process.Pid, MetricsURL: "http://" + metrics + "/metrics"})
		return nil
	}
	// The tiers run as separate processes: they share a link secret made
	// for this run, and (as any fleet node) never mint development tokens,
	// whatever the configuration file says.
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("cannot make a link secret: %w", err)
	}
	secret := hex.EncodeToString(key[:])
	logicArgs := append([]string{"logic"}, spec.ConfigArgs...)
	logicArgs = append(logicArgs, "-set", "logic.dev_tokens=false",
		"-set", "store.backend=pebble",
		"-set", "store.pebble.dir="+filepath.Join(spec.Dir, "store"),
		"-set", "logic.link_listen="+hp(spec.LinkPort),
		"-set", "logic.http_listen=", "-set", "logic.admin_listen="+hp(spec.LogicHTTP),
		"-set", "log.format=text")
	logicArgs = append(logicArgs, spec.LogicArgs...)
	// The secret goes in the environment, not on a command line.
	if err := start("logic", "logic", hp(spec.LogicHTTP), 0, []string{"PARLEY_LOGIC_LINK_SECRET=" + secret}, logicArgs...); err != nil {
		return nil, err
	}
	if err := set.waitReady(ctx, 0); err != nil {
		set.Stop()
		return nil, err
	}
	// With at least as many connection nodes as cores, each gets one
	// event loop and one Go scheduler slot: more only adds threads that
	// spin and switch between processes.
	env, loops := append(slices.Clone(spec.Env), "PARLEY_CONNSRV_LINK_SECRET="+secret), 0
	if spec.Connsrvs >= runtime.NumCPU() {
		env, loops = append(slices.Clone(env), "GOMAXPROCS=1"), 1
	}
	for i := range spec.Connsrvs {
		name := fmt.Sprintf("connsrv-%d", i+1)
		args := append(append([]string{"connsrv"}, spec.ConnsrvArgs...), spec.ConfigArgs...)
		args = append(args,
			"-set", "logic.dev_tokens=false",
			"-set", "connsrv.listen=tcp://"+hp(spec.Port),
			"-set", "connsrv.reuse_port=true",
			"-set", "connsrv.http_listen="+hp(spec.HTTPBase+i),
			"-set", "connsrv.logic_addrs="+hp(spec.LinkPort),
			"-set", "connsrv.ip_rate_exempt=127.0.0.0/8",
			"-set", "connsrv.drain_window=1s",
			"-set", "connsrv.node_id=bench-"+strconv.Itoa(i+1),
			"-set", "log.format=text")
		if loops > 0 {
			args = append(args, "-set", "connsrv.num_event_loop="+strconv.Itoa(loops))
		}
		if err := start(name, "connsrv", hp(spec.HTTPBase+i), spec.ConnsrvNice, env, args...); err != nil {
			set.Stop()
			return nil, err
		}
	}
	for i := 1; i < len(set.cmds); i++ {
		if err := set.waitReady(ctx, i); err != nil {
			set.Stop()
			return nil, err
		}
	}
	return set, nil
}

// waitReady polls server i's /readyz for up to 60s.
func (s *ServerSet) waitReady(ctx context.Context, i int) error {
	url := s.Servers[i].MetricsURL[:len(s.Servers[i].MetricsURL)-len("/metrics")] + "/readyz"
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited[i]:
			return fmt.Errorf("cannot start %s: it exited (see its log)", s.Servers[i].Name)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cannot start %s: not ready at %s within 60s (see its log)", s.Servers[i].Name, url)
}

// Stop ends every process, connection nodes first and the logic node
// last: SIGTERM, then SIGKILL after 15s.
func (s *ServerSet) Stop() {
	stop := func(from, to int) {
		for i := from; i < to; i++ {
			_ = s.cmds[i].Process.Signal(syscall.SIGTERM)
		}
		for i := from; i < to; i++ {
			select {
			case <-s.exited[i]:
			case <-time.After(15 * time.Second):
				_ = s.cmds[i].Process.Kill()
				<-s.exited[i]
			}
		}
	}
	if len(s.cmds) > 1 {
		stop(1, len(s.cmds))
	}
	if len(s.cmds) > 0 {
		stop(0, 1)
	}
	s.cmds, s.exited = nil, nil
}
