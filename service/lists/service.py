"""List use cases of more than one query, and what other features call."""

from service.lists import store

# Called by accounts at signup: every user has a default list from the start.
create_default_list = store.create_default_list
# Called by todos: MAX_TODOS_PER_LIST is a slot taken on the list before a todo is inserted
# (or moved in), given back when one is deleted (or moved out).
reserve_todo_slot = store.reserve_todo_slot
release_todo_slots = store.release_todo_slots
# Called by invitations when one is accepted.
add_member = store.add_member


# ---- Accounts and the startup migration (accounts+migration helper) ----
# Called by the startup migration (service/migrations.py): default lists of users stored
# before lists, in bulk.
DefaultListOwner = store.DefaultListOwner
create_default_lists = store.create_default_lists
# Called by accounts: signup removes the default list it made first when the email is taken;
# account deletion deletes the lists the user owns and leaves the others.
discard_default_list = store.discard_default_list
delete_lists_of = store.delete_lists_of
leave_all_lists = store.leave_all_lists
