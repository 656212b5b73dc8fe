package connsrv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/tierlink"
)

// BenchmarkIdleConns measures what an idle authenticated connection costs
// the server: it opens conns real loopback WebSocket connections to an
// in-process Server (clients are raw blocking sockets, so they cost the
// Go heap nothing), waits for every upgrade and for the welcome frame the
// logic side sends on Open, and reports the Go heap after GC per
// connection (heapB/conn), heap objects per connection (objs/conn) and
// resident memory per connection after returning freed pages to the OS
// (rssB/conn; noisier). The first 100 connections warm the server up and
// are not counted. One process may hold 20,000 files and each connection
// takes two here, so conns stays under 9,900. Compare runs with benchstat:
//
//	go test -run '^$' -bench IdleConns -benchtime 1x -count 6 ./connsrv/ | tee new.txt
func BenchmarkIdleConns(b *testing.B) {
	for _, n := range []int{2000, 8000} {
		b.Run("conns="+strconv.Itoa(n), func(b *testing.B) {
			benchIdleConns(b, n, nil)
		})
	}
}

func benchIdleConns(b *testing.B, n int, mod func(*Config)) {
	const warm = 100
	if os.Getenv("CONNSRV_DENSITY_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, for an exact profile
	}
	srv := startDensityServer(b, mod)
	addr, err := net.ResolveTCPAddr("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	tok, err := auth.Issue(testAuth, "density-user-0001", "", time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	req := []byte("GET /ws HTTP/1.1\r\nHost: " + srv.Addr() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Authorization: Bearer " + tok + "\r\n\r\n")
	b.ReportAllocs()
	var heap, objs, rss float64
	for b.Loop() {
		fds := make([]int, 0, n)
		fds = openRaw(b, addr.Port, req, warm, fds)
		h0, o0, r0 := memNow()
		fds = openRaw(b, addr.Port, req, n-warm, fds)
		waitFor(b, func() bool { return srv.opened.Load() >= int64(len(fds)) })
		h1, o1, r1 := memNow()
		writeHeapProfile(b)
		heap += float64(h1-h0) / float64(n-warm)
		objs += float64(o1-o0) / float64(n-warm)
		rss += float64(r1-r0) / float64(n-warm)
		runtime.KeepAlive(fds)
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
		waitFor(b, func() bool { return srv.Sessions() == 0 })
		srv.opened.Store(0)
	}
	b.ReportMetric(heap/float64(b.N), "heapB/conn")
	b.ReportMetric(objs/float64(b.N), "objs/conn")
	b.ReportMetric(rss/float64(b.N), "rssB/conn")
}

// writeHeapProfile writes a heap profile (in use = the open connections)
// to the file named by CONNSRV_DENSITY_HEAPPROFILE, when set:
//
//	go tool pprof -sample_index=inuse_space -top connsrv.test heap.out
func writeHeapProfile(b *testing.B) {
	name := os.Getenv("CONNSRV_DENSITY_HEAPPROFILE")
	if name == "" {
		return
	}
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// memNow returns the live heap bytes and objects after a full GC and the
// resident set after returning free pages to the OS.
func memNow() (heap, objs, rss int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.HeapObjects), vmRSS()
}

func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("VmRSS:"))
	if !ok {
		return 0
	}
	f := bytes.Fields(rest)
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return kb << 10
}

func waitFor(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("condition not met within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openRaw opens count upgraded connections with blocking sockets, from
// source addresses 127.0.0.2-127.0.0.9 in turn, and appends their fds.
func openRaw(b *testing.B, port int, req []byte, count int, fds []int) []int {
	b.Helper()
	const workers = 16
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				fd, err := rawUpgrade(port, byte(2+i%8), req)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					fds = append(fds, fd)
				}
				mu.Unlock()
			}
		})
	}
	for i := range count {
		next <- len(fds) + i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return fds
}

// rawUpgrade connects from 127.0.0.src, sends the upgrade request and
// reads the 101 response and the welcome frame.
func rawUpgrade(port int, src byte, req []byte) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("cannot open socket: %w", err)
	}
	tv := syscall.Timeval{Sec: 10}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, src}}); err != nil {
		_ = syscall.Close(fd)
		return -1, fmt.Errorf("cannot bind 127.0.0.%d: %w", src, err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return -1, fmt.Errorf("cannot connect: %w", err)
	}
	if _, err := syscall.Write(fd, req); err != nil {
		_ = syscall.Close(fd)
		return -1, fmt.Errorf("cannot write upgrade: %w", err)
	}
	var buf [512]byte
	got := 0
	want := -1
	for want < 0 || got < want {
		m, err := syscall.Read(fd, buf[got:])
		if err != nil || m == 0 {
			_ = syscall.Close(fd)
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return -1, fmt.Errorf("cannot read upgrade response (%d bytes so far): %w", got, err)
		}
		got += m
		if want < 0 {
			if i := bytes.Index(buf[:got], headEnd); i >= 0 {
				if !bytes.HasPrefix(buf[:got], []byte("HTTP/1.1 101")) {
					_ = syscall.Close(fd)
					return -1, fmt.Errorf("upgrade refused: %q", buf[:got])
				}
				want = i + len(headEnd) + 2 + len(densityWelcome)
			}
		}
	}
	return fd, nil
}

// densityWelcome stands for what logic sends a new session (hello).
var densityWelcome = []byte(`{"type":"hello","session":"0123456789abcdef","server_time":1767225600000,"heartbeat_ms":30000}`)

type densityServer struct {
	*Server
	opened atomic.Int64 // Opens the logic stand-in received
}

// startDensityServer starts a Server with a lean logic stand-in that keeps
// nothing per session: it answers Hello and Ping and sends densityWelcome
// for every Open.
func startDensityServer(b *testing.B, mod func(*Config)) *densityServer {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ds := &densityServer{}
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { densityLogic(c, &ds.opened) })
		}
	}()
	cfg := Default()
	cfg.Listen = "tcp://127.0.0.1:0"
	cfg.NumEventLoop = 2
	cfg.LogicAddrs = []string{ln.Addr().String()}
	cfg.LinkPoolSize = 2
	cfg.NodeID = "density-node"
	cfg.LinkSecret = string(testLinkSecret)
	cfg.IPConnRate = 0
	cfg.DrainWindow = 0
	if mod != nil {
		mod(&cfg)
	}
	v, err := auth.NewVerifier(testAuth, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(cfg, v, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ds.Server = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
		ln.Close()
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		b.Fatalf("Run returned early: %v", err)
	case <-time.After(5 * time.Second):
		b.Fatal("server not ready within 5s")
	}
	return ds
}

func densityLogic(c net.Conn, opened *atomic.Int64) {
	defer c.Close()
	r := tierlink.NewReader(c, 64<<10, 0)
	var out []byte
	for {
		f, err := r.Next()
		if err != nil {
			return
		}
		out = out[:0]
		switch f.Type {
		case tierlink.TypeHello:
			if _, err := tierlink.AcceptHandshake(c, r, f, "density-logic", testLinkSecret, nil); err != nil {
				return
			}
		case tierlink.TypePing:
			nonce, _ := tierlink.ParsePing(f.Payload)
			out = tierlink.AppendPing(out, tierlink.TypePong, nonce)
		case tierlink.TypeOpen:
			opened.Add(1)
			out = tierlink.AppendFrame(out, tierlink.TypeDeliver, f.Session, densityWelcome)
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}
