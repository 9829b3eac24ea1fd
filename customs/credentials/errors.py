"""Why a credential was refused, as one exception class and one exit code per reason.

A receiving customs administration scripts around `sealtrail customs verify-credential`, so
each failure has its own exit code rather than a generic 1: "not signed by anyone we trust"
(23) calls for a phone call, "revoked" (28) for holding the truck, "cannot read the file" (2)
for fixing the script. The codes sit in the project's range for credentials (20-30, see
sealtrail/errors.py); 1 and 70 mean something else.

    0  verified
    2  InputError            a file, key or argument we cannot use (missing, unreadable, not
                             JSON, too large, key file readable by others, bad DID)
    20 MalformedCredential   not a VC Data Model 2.0 credential (context, type, issuer,
                             subject, dates), or JSON with no JCS canonical form
    21 UnsupportedProof      no proof, a proof set, a proof type or cryptosuite other than
                             DataIntegrityProof / eddsa-jcs-2022, or a malformed proof
    22 WrongProofPurpose     proofPurpose is not assertionMethod
    23 UntrustedIssuer       the verification method is not pinned, not the issuer's, or not
                             authorised for assertionMethod in the pinned DID document
    24 InvalidSignature      the signature does not verify: the credential was changed
    25 NotYetValid           validFrom is in the future
    26 Expired               validUntil (or the proof's expires) is in the past
    27 UnknownContext        an @context URL that is not shipped with the package
    28 Revoked               the status list has the credential's bit set
    29 StatusListError       the status list file cannot vouch for the credential: another
                             list, another issuer or purpose, index out of range, or the
                             list itself does not verify
    30 StatusNotChecked      the credential has a credentialStatus and no status list was given

"""

from __future__ import annotations

from sealtrail.errors import SealTrailError

EXIT_OK = 0


class CredentialError(SealTrailError):
    """A credential or an input refused; `code` is the process exit code, `message` one line."""

    code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


class InputError(CredentialError):
    code = 2


class MalformedCredential(CredentialError):
    code = 20


class UnsupportedProof(CredentialError):
    code = 21


class WrongProofPurpose(CredentialError):
    code = 22


class UntrustedIssuer(CredentialError):
    code = 23


class InvalidSignature(CredentialError):
    code = 24


class NotYetValid(CredentialError):
    code = 25


class Expired(CredentialError):
    code = 26


class UnknownContext(CredentialError):
    code = 27


class Revoked(CredentialError):
    code = 28


class StatusListError(CredentialError):
    code = 29


class StatusNotChecked(CredentialError):
    code = 30


ALL_ERRORS: tuple[type[CredentialError], ...] = (
    InputError, MalformedCredential, UnsupportedProof, WrongProofPurpose, UntrustedIssuer,
    InvalidSignature, NotYetValid, Expired, UnknownContext, Revoked, StatusListError,
    StatusNotChecked,
)
"""Every refusal, in exit-code order; the tests hold the codes distinct and documented."""
