package seq

// filter is a growable Bloom filter of request keys: "no" means the key was
// never added, "maybe" means it may have been. It grows by chaining a new
// filter of twice the capacity when the newest is full; each new one has
// half the false positive rate of the one before (a scalable Bloom
// filter), so the whole stays under twice the first one's rate (about 1%)
// however many keys are added.
type filter struct {
	parts []bloom
}

// bloom is one fixed-size Bloom filter.
type bloom struct {
	bits   []uint64
	probes uint64
	n      int // keys added
	limit  int // capacity
}

// The first part takes 10 bits and 7 probes per key (about 1% false
// positives); every later one 1.5 bits and one probe more (half the rate).
const (
	bitsPerKey = 10
	probes     = 7
)

func newBloom(capacity, generation int) bloom {
	capacity = max(capacity, 64)
	bits := capacity * (2*bitsPerKey + 3*generation) / 2
	return bloom{bits: make([]uint64, (bits+63)/64), probes: uint64(probes + generation), limit: capacity}
}

// newFilter returns a filter sized for at least capacity keys.
func newFilter(capacity int) *filter {
	return &filter{parts: []bloom{newBloom(capacity, 0)}}
}

// add records key.
func (f *filter) add(sender, requestID string) {
	f.addHash(keyHash(sender, "", false, requestID))
}

// addScoped records the key (sender, "device/requestID") (the form
// record.DedupKey.Stored gives), without building that string.
func (f *filter) addScoped(sender, device, requestID string) {
	f.addHash(keyHash(sender, device, true, requestID))
}

func (f *filter) addHash(h1, h2 uint64) {
	last := &f.parts[len(f.parts)-1]
	if last.n >= last.limit {
		f.parts = append(f.parts, newBloom(2*last.limit, len(f.parts)))
		last = &f.parts[len(f.parts)-1]
	}
	m := uint64(len(last.bits) * 64)
	for i := range last.probes {
		b := (h1 + i*h2) % m
		last.bits[b/64] |= 1 << (b % 64)
	}
	last.n++
}

// mayContain reports whether key may have been added.
func (f *filter) mayContain(sender, requestID string) bool {
	return f.mayContainHash(keyHash(sender, "", false, requestID))
}

// mayContainScoped is mayContain of (sender, "device/requestID").
func (f *filter) mayContainScoped(sender, device, requestID string) bool {
	return f.mayContainHash(keyHash(sender, device, true, requestID))
}

func (f *filter) mayContainHash(h1, h2 uint64) bool {
	for p := range f.parts {
		bits := f.parts[p].bits
		m := uint64(len(bits) * 64)
		hit := true
		for i := range f.parts[p].probes {
			b := (h1 + i*h2) % m
			if bits[b/64]&(1<<(b%64)) == 0 {
				hit = false
				break
			}
		}
		if hit {
			return true
		}
	}
	return false
}

// bytes returns the filter's memory in bytes.
func (f *filter) bytes() int {
	n := 0
	for _, p := range f.parts {
		n += len(p.bits) * 8
	}
	return n
}

// keyHash returns two independent 64-bit hashes of (sender, requestID), or
// with scoped of (sender, device + "/" + requestID), for double hashing
// (FNV-1a with two offsets; deterministic across runs).
func keyHash(sender, device string, scoped bool, requestID string) (uint64, uint64) {
	const prime = 1099511628211
	h1 := uint64(14695981039346656037)
	h2 := uint64(0x9e3779b97f4a7c15)
	mix := func(c byte) {
		h1 ^= uint64(c)
		h1 *= prime
		h2 ^= uint64(c)
		h2 *= prime
	}
	for i := 0; i < len(sender); i++ {
		mix(sender[i])
	}
	mix(0)
	if scoped {
		for i := 0; i < len(device); i++ {
			mix(device[i])
		}
		mix('/')
	}
	for i := 0; i < len(requestID); i++ {
		mix(requestID[i])
	}
	return h1, h2 | 1 // an odd step visits every bit position
}
