package term

import "github.com/parley-chat/parley/internal/proto"

func jsonPresence(user string, online bool) ([]byte, error) {
	return proto.Marshal(proto.TypePresence, "", proto.PresenceAnswer{Users: []proto.PresenceInfo{{User: user, Online: online}}})
}
