"""OFD (GB/T 33190) container and GB/T 38540 seal verification, as pure functions.

Bytes in, structured facts out; no I/O, no clock, no trust decisions.
"""

from adapters.ofd.container import OfdPackage, ZipLimits, read_ofd_package
from adapters.ofd.errors import OfdError
from adapters.ofd.verify import (
    OfdVerification,
    Problem,
    ReferenceCheck,
    SignatureCheck,
    verify_ofd_signatures,
    verify_package,
)

__all__ = [
    "OfdError",
    "OfdPackage",
    "OfdVerification",
    "Problem",
    "ReferenceCheck",
    "SignatureCheck",
    "ZipLimits",
    "read_ofd_package",
    "verify_ofd_signatures",
    "verify_package",
]
