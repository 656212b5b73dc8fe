package logic

import (
	"cmp"
	"slices"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// Group roles (docs/protocol.md, "Groups and roles"). A group's creator
// and its admins may add and remove members and change roles; the creator
// cannot be removed or demoted by anyone else; a group with members always
// has an admin: the last admin to leave hands the role to the oldest
// member (lowest join seq, then user id), and the last admin cannot step
// down to member.

// groupRoles maps each member of a group to its row, with rows stored
// before roles existed (RoleUnset) resolved: the group's creator is
// RoleCreator, everyone else RoleMember.
type groupRoles map[string]record.Member

// resolveRoles resolves rows (see groupRoles). A group with members but no
// admin — one whose creator left before roles existed, or a store that
// lost a promotion — has its oldest member act as admin, as a leave would
// have made them: nobody is ever locked out of a group's administration.
// acting names that member ("" when the group has an admin); the first
// change of the group stores the role (groupChange), so that it does not
// move when another member becomes admin. A role this build does not know
// counts as member.
func resolveRoles(meta record.Chat, rows []record.Member) (g groupRoles, acting string) {
	out := make(groupRoles, len(rows))
	for _, m := range rows {
		switch {
		case m.Role == record.RoleUnset && m.User == meta.CreatedBy:
			m.Role = record.RoleCreator
		case m.Role == record.RoleUnset || m.Role > record.RoleCreator:
			m.Role = record.RoleMember
		}
		out[m.User] = m
	}
	if len(out) > 0 && out.admins() == 0 {
		acting = out.oldest("")
		m := out[acting]
		m.Role = record.RoleAdmin
		out[acting] = m
	}
	return out, acting
}

// admin reports whether user is a member with the admin or creator role.
func (g groupRoles) admin(user string) bool {
	m, ok := g[user]
	return ok && m.Role >= record.RoleAdmin
}

// parseRole returns the role a group_role frame names.
func parseRole(s string) (record.Role, *proto.Error) {
	switch s {
	case "admin":
		return record.RoleAdmin, nil
	case "member":
		return record.RoleMember, nil
	}
	return 0, proto.Errorf(proto.CodeBadRequest, `role must be "admin" or "member"`)
}

// changeDenied returns why by may not make the change typ to target (role
// for group_role), or nil. by is a member (checked before).
func (g groupRoles) changeDenied(typ, by, target string, role record.Role) *proto.Error {
	switch typ {
	case proto.TypeGroupLeave:
		return nil
	case proto.TypeGroupAdd:
		if !g.admin(by) {
			return proto.Errorf(proto.CodeForbidden, "only the group's admins can add members")
		}
	case proto.TypeGroupRemove:
		if target == by {
			return nil // a removal of oneself is a leave
		}
		if !g.admin(by) {
			return proto.Errorf(proto.CodeForbidden, "only the group's admins can remove members")
		}
		if g[target].Role == record.RoleCreator {
			return proto.Errorf(proto.CodeForbidden, "the group's creator cannot be removed")
		}
	case proto.TypeGroupRole:
		if !g.admin(by) {
			return proto.Errorf(proto.CodeForbidden, "only the group's admins can change roles")
		}
		m, ok := g[target]
		switch {
		case !ok:
			return proto.Errorf(proto.CodeNotMember, "%s is not a member of the group", target)
		case m.Role == record.RoleCreator:
			return proto.Errorf(proto.CodeForbidden, "the group's creator keeps that role")
		case role == record.RoleMember && m.Role == record.RoleAdmin && g.admins() == 1:
			return proto.Errorf(proto.CodeForbidden, "a group needs an admin: make another member admin first")
		}
	}
	return nil
}

// admins counts the members with the admin or creator role.
func (g groupRoles) admins() int {
	n := 0
	for _, m := range g {
		if m.Role >= record.RoleAdmin {
			n++
		}
	}
	return n
}

// successor returns the member who becomes admin when leaving leaves the
// group: the oldest remaining member when leaving is its last admin and
// members remain; "" otherwise.
func (g groupRoles) successor(leaving string) string {
	if !g.admin(leaving) || g.admins() > 1 {
		return ""
	}
	return g.oldest(leaving)
}

// oldest returns the member with the lowest (Joined, User) but except, ""
// when there is none.
func (g groupRoles) oldest(except string) string {
	var oldest *record.Member
	for u, m := range g {
		if u == except {
			continue
		}
		if oldest == nil || cmp.Or(cmp.Compare(m.Joined, oldest.Joined), cmp.Compare(m.User, oldest.User)) < 0 {
			oldest = &m
		}
	}
	if oldest == nil {
		return ""
	}
	return oldest.User
}

// adminList returns the members with the admin or creator role, sorted,
// and the creator ("" when the creator is not a member).
func (g groupRoles) adminList() (admins []string, creator string) {
	admins = []string{}
	for u, m := range g {
		if m.Role >= record.RoleAdmin {
			admins = append(admins, u)
		}
		if m.Role == record.RoleCreator {
			creator = u
		}
	}
	slices.Sort(admins)
	return admins, creator
}
