"""Lists: every todo is in one; a list is shared with members who each have a role."""
