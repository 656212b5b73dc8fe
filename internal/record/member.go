package record

// Role is a group member's role. Roles are stored per member row; a row
// written before roles existed has RoleUnset, which the logic tier reads
// as creator for the group's CreatedBy and member for everyone else.
type Role uint8

const (
	RoleUnset   Role = iota // a row from before roles were stored
	RoleMember              // may send, read and leave
	RoleAdmin               // may also add and remove members and change roles
	RoleCreator             // an admin whom other admins cannot remove or demote
)

// String returns the role's wire name ("member", "admin", "creator"), ""
// for RoleUnset.
func (r Role) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	case RoleCreator:
		return "creator"
	}
	return ""
}

// Member is one member row of a chat.
type Member struct {
	User string
	Role Role
	// Joined is the seq of the event that added the member (0: one of the
	// chat's initial members, or a row from before it was stored). The
	// oldest member is the one with the lowest (Joined, User).
	Joined uint64
}
