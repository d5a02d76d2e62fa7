"""Helpers every feature's store uses."""

from beanie import Document, PydanticObjectId


def id_of(document: Document) -> PydanticObjectId:
    """The id of a document that was loaded from, or inserted into, the database."""
    if document.id is None:
        raise ValueError(f"{type(document).__name__} has not been stored yet")
    return document.id
