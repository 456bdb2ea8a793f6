"""One error type per failure a user can meet, each with a message a person can act on."""

from __future__ import annotations


class MedShieldError(Exception):
    """Base class: the message is safe to show to the user (no PHI, no secrets)."""


class InvalidImage(MedShieldError):
    """An uploaded file is not an image we accept (wrong type, broken, too large, hostile)."""


class InvalidArchive(InvalidImage):
    """A zip archive is malformed or hostile (bomb, path traversal, nested archive...)."""


class AccessDenied(MedShieldError):
    """The acting user's role lacks the permission, or the account is not active."""


class AuthenticationFailed(MedShieldError):
    """Wrong user name or password."""


class AccountLocked(AuthenticationFailed):
    """Too many failed attempts: the account is locked for a while."""


class NotFound(MedShieldError):
    """The requested object does not exist."""


class ValidationError(MedShieldError):
    """A form value is missing or malformed."""


class Conflict(MedShieldError):
    """The change clashes with existing data (duplicate user name, patient id...)."""


class IntegrityError(MedShieldError):
    """Stored data failed a checksum, a signature or a hash-chain check."""


class PacsError(MedShieldError):
    """A PACS could not be reached or refused a request (connection, timeout, TLS, authentication)."""
