package connsrv

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

func authIssue(cfg auth.Config, user string) (string, error) {
	return auth.Issue(cfg, user, "", time.Hour, time.Now())
}

func netDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
