"""Export and import: everything a user can read, out as one JSON or CSV file, and such a
JSON file back in as new lists of theirs.

Its own feature package rather than part of lists or todos: it is a use case over both (a
file holds lists with their todos), it has its own wire format (versioned, with its own
validation and error paths) and its own limit (IMPORT_MAX_TODOS). Put in either feature, the
other would have to be reached into; here both are used through their service.py functions.
"""
