"""国密 (GM/T) cryptography for the gateway: SM3, SM2 keys/signatures, SM2 certificates.

Everything SM2 goes through :mod:`gateway.crypto.sm2`, which hides the backend.
"""
