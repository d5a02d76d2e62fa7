"""Invitations: an owner invites an email to a list; its account accepts or declines."""
