"""The errors a user can fix: their messages say what is wrong and what to do (no torch here, so the
table verbs start without it)."""


class UserError(Exception):
    """Bad input from the user (config, budget, method name): one line, says what to do."""


class DatasetError(Exception):
    """A dataset is missing, corrupt or misconfigured; the message says what to do."""
