package connsrv

import (
	"math/bits"
	"sync"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/parley-chat/parley/connsrv/wsframe"
)

// Write buffers are shared by all sessions through outPool instead of
// being kept per session between flushes, so an idle connection holds no
// write buffer at all (BenchmarkIdleConns). Capacities are powers of two
// from minOut to maxOut; larger buffers (a burst to one client) are left
// to the GC.
const (
	minOutShift = 8  // 256 B
	maxOutShift = 16 // 64 KiB
)

// outPool[i] holds buffers of capacity 1<<(minOutShift+i), stored as a
// pointer to their first byte so Put does not allocate.
var outPool [maxOutShift - minOutShift + 1]sync.Pool

// outClass returns the pool index for a buffer of at least n bytes, or -1
// when n is over the largest class.
func outClass(n int) int {
	if n <= 1<<minOutShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxOutShift {
		return -1
	}
	return shift - minOutShift
}

// getOut returns an empty buffer with room for at least n bytes.
func getOut(n int) []byte {
	i := outClass(n)
	if i < 0 {
		return make([]byte, 0, n)
	}
	size := 1 << (minOutShift + i)
	if p, _ := outPool[i].Get().(*byte); p != nil {
		return unsafe.Slice(p, size)[:0]
	}
	return make([]byte, 0, size)
}

// putOut gives a buffer from getOut back to the pool. Buffers of other
// capacities (grown by append, or over the largest class) are dropped.
// The caller must not use b afterwards.
func putOut(b []byte) {
	c := cap(b)
	if c < 1<<minOutShift || c > 1<<maxOutShift || c&(c-1) != 0 {
		return
	}
	outPool[bits.Len(uint(c))-1-minOutShift].Put(unsafe.SliceData(b))
}

// appendFrameOut appends a server frame to a pending-output buffer,
// taking the buffer from outPool when out is nil and moving to a larger
// pooled one when it is full.
func appendFrameOut(out []byte, op ws.OpCode, payload []byte) []byte {
	need := len(out) + wsframe.MaxHeaderSize + len(payload)
	if need > cap(out) {
		nb := getOut(max(need, 2*cap(out)))
		nb = append(nb, out...)
		putOut(out)
		out = nb
	}
	return wsframe.AppendFrame(out, op, payload)
}
