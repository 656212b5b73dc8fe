package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ParseVmRSS returns the VmRSS of a /proc/PID/status text, in bytes.
func ParseVmRSS(r io.Reader) (int64, error) { return parseStatusKB(r, "VmRSS") }

// ParseRssAnon returns the RssAnon of a /proc/PID/status text, in bytes:
// the resident anonymous (private) memory, without the binary's and
// libraries' file pages that VmRSS also counts (shared by every process
// running the same binary).
func ParseRssAnon(r io.Reader) (int64, error) { return parseStatusKB(r, "RssAnon") }

// parseStatusKB returns the "key: N kB" field of a /proc/PID/status text
// in bytes.
func parseStatusKB(r io.Reader, key string) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("cannot parse %s line %q", key, sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cannot parse %s line %q: %w", key, sc.Text(), err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("cannot read status: %w", err)
	}
	return 0, fmt.Errorf("cannot find %s in status", key)
}

// readStatusKB reads the "key: N kB" field of process pid's status.
func readStatusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("cannot read status of process %d: %w", pid, err)
	}
	return parseStatusKB(bytes.NewReader(b), key)
}

// ReadRssAnon returns the resident anonymous memory of process pid in
// bytes.
func ReadRssAnon(pid int) (int64, error) { return readStatusKB(pid, "RssAnon") }

// ReadRSS returns the resident set size of process pid in bytes.
func ReadRSS(pid int) (int64, error) { return readStatusKB(pid, "VmRSS") }

// Sockstat is the TCP line of /proc/net/sockstat.
type Sockstat struct {
	InUse    int64 `json:"inuse"`     // TCP sockets in use
	Orphan   int64 `json:"orphan"`    // orphaned sockets
	TimeWait int64 `json:"tw"`        // sockets in TIME_WAIT
	Alloc    int64 `json:"alloc"`     // allocated sockets
	MemPages int64 `json:"mem_pages"` // pages of socket buffer memory
}

// MemBytes is the socket buffer memory in bytes (pages of 4096 bytes).
func (s Sockstat) MemBytes() int64 { return s.MemPages * 4096 }

// ParseSockstat parses the text of /proc/net/sockstat.
func ParseSockstat(r io.Reader) (Sockstat, error) {
	var s Sockstat
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f)%2 != 0 {
			return s, fmt.Errorf("cannot parse sockstat line %q", sc.Text())
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return s, fmt.Errorf("cannot parse sockstat field %s: %w", f[i], err)
			}
			switch f[i] {
			case "inuse":
				s.InUse = v
			case "orphan":
				s.Orphan = v
			case "tw":
				s.TimeWait = v
			case "alloc":
				s.Alloc = v
			case "mem":
				s.MemPages = v
			}
		}
		return s, nil
	}
	return s, fmt.Errorf("cannot find the TCP line in sockstat")
}

// ReadSockstat reads /proc/net/sockstat.
func ReadSockstat() (Sockstat, error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return Sockstat{}, fmt.Errorf("cannot read sockstat: %w", err)
	}
	return ParseSockstat(bytes.NewReader(b))
}

// ParseMetrics parses Prometheus text exposition into name{labels} -> value.
// Comments and malformed lines are skipped.
func ParseMetrics(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[strings.TrimSpace(line[:i])] = v
	}
	return out
}

// ScrapeMetrics fetches and parses a Prometheus /metrics URL.
func ScrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot scrape %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cannot scrape %s: HTTP %d", url, resp.StatusCode)
	}
	return ParseMetrics(resp.Body), nil
}

// fdReserve is the descriptors kept free for everything but connections
// (stdio, metrics scrapes, the runtime's poller).
const fdReserve = 64

// RaiseNofile raises this process's RLIMIT_NOFILE soft limit to the hard
// limit and checks that conns connections fit. It returns the new soft
// limit.
func RaiseNofile(conns int) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("cannot read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("cannot raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	if need := uint64(conns) + fdReserve; need > lim.Cur {
		return lim.Cur, fmt.Errorf("cannot hold %d connections in one process: RLIMIT_NOFILE is %d (hard limit) and %d connections need %d descriptors; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or spread them over client processes of at most %d connections (parley bench does that)",
			conns, lim.Cur, conns, need, lim.Cur-fdReserve)
	}
	return lim.Cur, nil
}

// Meminfo is the part of /proc/meminfo bench reads, in bytes.
type Meminfo struct {
	Available int64
	Slab      int64
}

// ParseMeminfo parses the text of /proc/meminfo.
func ParseMeminfo(r io.Reader) (Meminfo, error) {
	var m Meminfo
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "MemAvailable" && name != "Slab") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("cannot parse meminfo line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("cannot parse meminfo line %q: %w", sc.Text(), err)
		}
		if name == "Slab" {
			m.Slab = kb * 1024
		} else {
			m.Available = kb * 1024
		}
		found++
	}
	if found != 2 {
		return m, fmt.Errorf("cannot find MemAvailable and Slab in meminfo")
	}
	return m, nil
}

// ReadMeminfo reads /proc/meminfo.
func ReadMeminfo() (Meminfo, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return Meminfo{}, fmt.Errorf("cannot read meminfo: %w", err)
	}
	return ParseMeminfo(bytes.NewReader(b))
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clockTicks = 100

// statFields returns the fields of a /proc/PID/stat text from field 3
// (state) on, so that field N is at index N-3; it needs at least field
// last.
func statFields(s string, last int) ([]string, error) {
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("cannot parse stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < last-2 {
		return nil, fmt.Errorf("cannot parse stat: %d fields", len(f)+2)
	}
	return f, nil
}

// readStat returns process pid's /proc/PID/stat text.
func readStat(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", fmt.Errorf("cannot read stat of process %d: %w", pid, err)
	}
	return string(b), nil
}

// ParseStatCPU returns utime+stime in seconds from a /proc/PID/stat text.
func ParseStatCPU(s string) (float64, error) {
	f, err := statFields(s, 15) // utime and stime are fields 14 and 15
	if err != nil {
		return 0, err
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cannot parse stat times %q %q", f[11], f[12])
	}
	return float64(u+st) / clockTicks, nil
}

// ReadCPUSeconds returns process pid's user+system CPU time in seconds.
func ReadCPUSeconds(pid int) (float64, error) {
	s, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return ParseStatCPU(s)
}

// ParseStatNice returns the nice value (field 19) from a /proc/PID/stat
// text.
func ParseStatNice(s string) (int, error) {
	f, err := statFields(s, 19)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(f[16])
	if err != nil {
		return 0, fmt.Errorf("cannot parse stat nice %q", f[16])
	}
	return n, nil
}

// ReadNice returns process pid's nice value.
func ReadNice(pid int) (int, error) {
	s, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return ParseStatNice(s)
}
