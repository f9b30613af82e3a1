# Contract of ext.sign: HMAC-SHA256 request signing with the key prepared once.
#
# The key-derived state (SHA-256 states after absorbing the ipad/opad key
# blocks) sits behind an opaque pointer, so modules that cimport this file need
# no OpenSSL headers.
cimport cython


@cython.final
cdef class HmacSigner:
    # opaque key state (see sign.pyx); never the raw secret
    cdef void* _st
    # True once __init__ prepared a key; signing before that is refused
    cdef bint _ready

    # Write the 64 lower-case hex chars of HMAC-SHA256(key, data[:n]) into
    # out[0:64] (no NUL). Needs no GIL and touches no shared mutable state, so
    # it may run concurrently on one signer. Return 0, or -1 if the signer has
    # no key or OpenSSL failed (only possible with the EVP fallback build).
    cdef int sign_hex_into(self, const unsigned char* data, size_t n, char* out) noexcept nogil
    cpdef str sign_hex(self, object payload)
