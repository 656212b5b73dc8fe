package ring

// Owner returns the member with the highest weight for key, or "" when
// members is empty. The result does not depend on the order of members.
// It does not allocate.
func Owner(key string, members []string) string {
	var best string
	var bestW uint64
	kh := hash(key, offset64)
	for _, m := range members {
		w := mix(hash(m, kh))
		if best == "" || w > bestW || (w == bestW && m < best) {
			best, bestW = m, w
		}
	}
	return best
}

const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

// hash is 64-bit FNV-1a of s continued from h.
func hash(s string, h uint64) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	// A separator, so that ("ab","c") and ("a","bc") differ.
	h ^= 0xff
	h *= prime64
	return h
}

// mix is the splitmix64 finalizer: FNV's low bits mix poorly on their own.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
