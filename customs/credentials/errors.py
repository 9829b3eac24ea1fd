"""Why a credential was refused, as one exception class and one exit code per reason.

A receiving customs administration scripts around `sealtrail customs verify-credential`, so
each failure has its own exit code rather than a generic 1: "not signed by anyone we trust"
(6) calls for a phone call, "revoked" (11) for holding the truck, "cannot read the file" (2)
for fixing the script. Code 1 is left to Python for an unexpected crash, which is a bug.

    0  verified
    2  InputError            a file, key or argument we cannot use (missing, unreadable, not
                             JSON, too large, key file readable by others, bad DID)
    3  MalformedCredential   not a VC Data Model 2.0 credential (context, type, issuer,
                             subject, dates), or JSON with no JCS canonical form
    4  UnsupportedProof      no proof, a proof set, a proof type or cryptosuite other than
                             DataIntegrityProof / eddsa-jcs-2022, or a malformed proof
    5  WrongProofPurpose     proofPurpose is not assertionMethod
    6  UntrustedIssuer       the verification method is not pinned, not the issuer's, or not
                             authorised for assertionMethod in the pinned DID document
    7  InvalidSignature      the signature does not verify: the credential was changed
    8  NotYetValid           validFrom is in the future
    9  Expired               validUntil (or the proof's expires) is in the past
    10 UnknownContext        an @context URL that is not shipped with the package
    11 Revoked               the status list has the credential's bit set
    12 StatusListError       the status list file cannot vouch for the credential: another
                             list, another issuer or purpose, index out of range, or the
                             list itself does not verify
    13 StatusNotChecked      the credential has a credentialStatus and no status list was given

The lead re-parents `CredentialError` under the project's error hierarchy; the codes stay.
"""

from __future__ import annotations

EXIT_OK = 0


class CredentialError(Exception):
    """A credential or an input refused; `code` is the process exit code, `message` one line."""

    code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(CredentialError):
    code = 2


class MalformedCredential(CredentialError):
    code = 3


class UnsupportedProof(CredentialError):
    code = 4


class WrongProofPurpose(CredentialError):
    code = 5


class UntrustedIssuer(CredentialError):
    code = 6


class InvalidSignature(CredentialError):
    code = 7


class NotYetValid(CredentialError):
    code = 8


class Expired(CredentialError):
    code = 9


class UnknownContext(CredentialError):
    code = 10


class Revoked(CredentialError):
    code = 11


class StatusListError(CredentialError):
    code = 12


class StatusNotChecked(CredentialError):
    code = 13


ALL_ERRORS: tuple[type[CredentialError], ...] = (
    InputError, MalformedCredential, UnsupportedProof, WrongProofPurpose, UntrustedIssuer,
    InvalidSignature, NotYetValid, Expired, UnknownContext, Revoked, StatusListError,
    StatusNotChecked,
)
"""Every refusal, in exit-code order; the tests hold the codes distinct and documented."""
