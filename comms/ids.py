import uuid


def new_id() -> str:
    """A 32-character lowercase hex id, the form every public id takes."""
    return uuid.uuid4().hex
