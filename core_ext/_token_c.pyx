# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Risk token, compiled twin of ``_token_py`` (design §3, ``docs/token.md``).

Same API and results as the Python twin, including error messages. Speed comes from:
the HMAC's inner and outer SHA-256 pad states computed once per key when the
``KeyRing`` is built and copied for each token (no re-keying, no digest look-up);
SHA-256 without a per-call algorithm fetch (see the crypto shim below); token parsing, base64url and decimal
normalisation as C loops over the string's bytes.

Thread safety: the keyed HMAC contexts (and, in the EVP build, the digest
context) are shared mutable state. Every function here holds the GIL from start to end and calls no Python
code while a context is in use, so calls cannot interleave.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.math cimport isfinite
from libc.string cimport memcmp, memcpy, memset

import os
from decimal import Decimal

from core_ext import keys
from core_ext.errors import CanonicalEncodingError
from core_ext.token_format import (
    BODY_PREFIX,
    BOOL_FIELDS,
    DECIMAL_FIELDS,
    MAX_DECIMAL_DIGITS,
    MAX_ISSUED_AT,
    MAX_TOKEN_LENGTH,
    MAX_WINDOW_SECONDS,
    NONCE_ERROR,
    NOT_A_DECIMAL,
    OK,
    BATCH_ERROR,
    REQUEST_INVALID,
    WIRE_ENUMS,
    WIRE_FIELD_NUMBERS,
    WIRE_ORDER_FIELD,
    WIRE_TOKEN_FIELD,
    OPTIONAL_FIELDS,
    ORDER_FIELDS,
    TOKEN_BAD_SIGNATURE,
    TOKEN_EXPIRED,
    TOKEN_FIELDS_CHANGED,
    TOKEN_MALFORMED,
    TOKEN_MISSING,
    TOKEN_NOT_YET_VALID,
    TOKEN_UNKNOWN_KEY,
    TOKEN_VERSION,
    TOO_MANY_DIGITS,
    check_issued_at,
    check_verify_window,
    preview,
    type_name,
)

__all__ = [
    "KeyRing",
    "VerifyResult",
    "canonical_decimal",
    "canonical_order_body",
    "sign_token",
    "verify_order_request",
    "verify_order_requests",
    "verify_token",
]


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    object PyUnicode_DecodeASCII(const char*, Py_ssize_t, const char*)
    double PyFloat_AS_DOUBLE(object)
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1


cdef extern from *:
    """
    /* Crypto shim: the fastest OpenSSL path available, one API for the code below.
     *
     * OpenSSL 3 still ships the legacy SHA256_* functions (deprecated, hence
     * OPENSSL_SUPPRESS_DEPRECATED). They are several times faster per call than the
     * provider API (EVP_MAC re-init ~0.5 us, HMAC_CTX re-init ~0.3 us, the HMAC on
     * precomputed SHA256_* pad states below ~0.15 us; EVP digest ~0.25 us vs SHA256_*
     * ~0.12 us on ~150 bytes). An OpenSSL built without them
     * (OPENSSL_NO_DEPRECATED_3_0, set by macros.h from OPENSSL_NO_DEPRECATED), or a build
     * with -DTESSERA_CRYPTO_EVP, uses EVP_MAC / EVP_MD instead (OpenSSL 3 only). */
    #define OPENSSL_SUPPRESS_DEPRECATED 1
    /* 1 when the legacy build's two-message SHA-NI path is in use (set at import). */
    static int tessera_sha_ni = 0;
    #include <openssl/opensslv.h>
    #include <openssl/crypto.h>
    #include <openssl/evp.h>
    #include <openssl/rand.h>
    #if !defined(OPENSSL_NO_DEPRECATED_3_0) && !defined(TESSERA_CRYPTO_EVP)
    #define TESSERA_LEGACY_CRYPTO 1
    #include <openssl/sha.h>
    #include <string.h>
    /* HMAC-SHA256 (RFC 2104) on SHA256_*: the states after the key's inner and outer
     * pad blocks are computed once per key; each MAC copies them and hashes the
     * message, then the inner digest: two struct copies and three compression
     * rounds for a ~120-byte token header, no re-initialisation of an HMAC_CTX. */
    typedef struct { SHA256_CTX inner; SHA256_CTX outer; } tessera_hmac;

    static tessera_hmac *tessera_hmac_new(const unsigned char *key, size_t keylen) {
        unsigned char block[SHA256_CBLOCK];
        unsigned char hashed[SHA256_DIGEST_LENGTH];
        size_t i;
        int ok;
        tessera_hmac *ctx = OPENSSL_zalloc(sizeof(*ctx));
        if (ctx == NULL) return NULL;
        if (keylen > SHA256_CBLOCK) {      /* a long key is hashed first (RFC 2104) */
            SHA256(key, keylen, hashed);
            key = hashed;
            keylen = SHA256_DIGEST_LENGTH;
        }
        memset(block, 0, sizeof(block));
        memcpy(block, key, keylen);
        for (i = 0; i < SHA256_CBLOCK; i++) block[i] ^= 0x36;
        ok = SHA256_Init(&ctx->inner) == 1 && SHA256_Update(&ctx->inner, block, SHA256_CBLOCK) == 1;
        for (i = 0; i < SHA256_CBLOCK; i++) block[i] ^= 0x36 ^ 0x5c;
        ok = ok && SHA256_Init(&ctx->outer) == 1 && SHA256_Update(&ctx->outer, block, SHA256_CBLOCK) == 1;
        OPENSSL_cleanse(block, sizeof(block));
        OPENSSL_cleanse(hashed, sizeof(hashed));
        if (!ok) {
            OPENSSL_clear_free(ctx, sizeof(*ctx));
            return NULL;
        }
        return ctx;
    }
    static int tessera_hmac_sha256(tessera_hmac *ctx, const unsigned char *data, size_t n,
                                   unsigned char *out) {
        SHA256_CTX work = ctx->inner;
        unsigned char inner[SHA256_DIGEST_LENGTH];
        int ok = SHA256_Update(&work, data, n) == 1 && SHA256_Final(inner, &work) == 1;
        work = ctx->outer;
        ok = ok && SHA256_Update(&work, inner, sizeof(inner)) == 1 && SHA256_Final(out, &work) == 1;
        OPENSSL_cleanse(&work, sizeof(work));
        OPENSSL_cleanse(inner, sizeof(inner));
        return ok;
    }
    static void tessera_hmac_free(tessera_hmac *ctx) { OPENSSL_clear_free(ctx, sizeof(*ctx)); }
    static int tessera_sha256(const unsigned char *data, size_t n, unsigned char *out) {
        SHA256_CTX ctx;
        int ok = SHA256_Init(&ctx) == 1 && SHA256_Update(&ctx, data, n) == 1
            && SHA256_Final(out, &ctx) == 1;
        OPENSSL_cleanse(&ctx, sizeof(ctx));
        return ok;
    }
    /* SHA-256 with the x86 SHA extensions, two messages at a time.
     *
     * A SHA-256 block is a chain of 32 dependent SHA256RNDS2 instructions: one message
     * leaves the unit idle between them (its latency), two independent messages in
     * step use those cycles. The token check has two independent hashes, the HMAC's
     * inner hash of the token header (2 blocks after the precomputed pad block) and
     * the body digest (4 blocks for a market order), and the outer hash (1 block)
     * depends only on the inner one: in step they take 4 block times instead of 7.
     * Used when the CPU has the extensions (CPUID), with the states after the key's pad
     * blocks that the SHA256_CTX pair above holds; else the SHA256_* path. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define TESSERA_SHA_NI_BUILD 1
    #include <cpuid.h>
    #include <immintrin.h>
    #define TSR_NI __attribute__((target("sha,sse4.1,ssse3")))

    static const unsigned int tsr_k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    };
    static const unsigned int tsr_iv[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    };

    static int tsr_cpu_has_sha_ni(void) {
        unsigned int a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19)))   /* SSSE3, SSE4.1 */
            return 0;
        return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));          /* SHA */
    }

    /* h[0..7] (a..h) to and from the instructions' register layout: ABEF and CDGH,
     * highest lane first. */
    TSR_NI static inline void tsr_load(const unsigned int *h, __m128i *abef, __m128i *cdgh) {
        __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0xB1);        /* b a d c */
        __m128i u = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(h + 4)), 0x1B);  /* h g f e */
        *abef = _mm_alignr_epi8(t, u, 8);
        *cdgh = _mm_blend_epi16(u, t, 0xF0);
    }
    TSR_NI static inline void tsr_store(unsigned int *h, __m128i abef, __m128i cdgh) {
        __m128i t = _mm_shuffle_epi32(abef, 0x1B);
        __m128i u = _mm_shuffle_epi32(cdgh, 0xB1);
        _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(t, u, 0xF0));
        _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(u, t, 8));
    }
    /* Message words 4i..4i+3 from the previous sixteen (FIPS 180-4 6.2.2 step 1). */
    TSR_NI static inline __m128i tsr_schedule(__m128i w0, __m128i w1, __m128i w2, __m128i w3) {
        __m128i t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        return _mm_sha256msg2_epu32(t, w3);
    }
    /* Rounds 4i..4i+3. */
    TSR_NI static inline void tsr_rounds4(__m128i *abef, __m128i *cdgh, __m128i w, int i) {
        __m128i m = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)(tsr_k + 4 * i)));
        *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, m);    /* now ABEF; *abef is CDGH */
        *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(m, 0x0E));
    }
    TSR_NI static inline __m128i tsr_words(const unsigned char *block, int i) {
        const __m128i big_endian = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        return _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * i)), big_endian);
    }
    TSR_NI static void tsr_compress1(unsigned int *h, const unsigned char *block) {
        __m128i abef, cdgh, abef0, cdgh0, w[16];
        int i;
        tsr_load(h, &abef, &cdgh);
        abef0 = abef;
        cdgh0 = cdgh;
        #pragma GCC unroll 16
        for (i = 0; i < 16; i++) {
            w[i] = i < 4 ? tsr_words(block, i) : tsr_schedule(w[i - 4], w[i - 3], w[i - 2], w[i - 1]);
            tsr_rounds4(&abef, &cdgh, w[i], i);
        }
        tsr_store(h, _mm_add_epi32(abef, abef0), _mm_add_epi32(cdgh, cdgh0));
    }
    /* One block of each of two messages, their rounds interleaved. */
    TSR_NI static void tsr_compress2(unsigned int *ha, const unsigned char *a, unsigned int *hb,
                                     const unsigned char *b) {
        __m128i abef, cdgh, abef0, cdgh0, w[16], abef_b, cdgh_b, abef0_b, cdgh0_b, v[16];
        int i;
        tsr_load(ha, &abef, &cdgh);
        tsr_load(hb, &abef_b, &cdgh_b);
        abef0 = abef;
        cdgh0 = cdgh;
        abef0_b = abef_b;
        cdgh0_b = cdgh_b;
        #pragma GCC unroll 16
        for (i = 0; i < 16; i++) {
            w[i] = i < 4 ? tsr_words(a, i) : tsr_schedule(w[i - 4], w[i - 3], w[i - 2], w[i - 1]);
            v[i] = i < 4 ? tsr_words(b, i) : tsr_schedule(v[i - 4], v[i - 3], v[i - 2], v[i - 1]);
            tsr_rounds4(&abef, &cdgh, w[i], i);
            tsr_rounds4(&abef_b, &cdgh_b, v[i], i);
        }
        tsr_store(ha, _mm_add_epi32(abef, abef0), _mm_add_epi32(cdgh, cdgh0));
        tsr_store(hb, _mm_add_epi32(abef_b, abef0_b), _mm_add_epi32(cdgh_b, cdgh0_b));
    }

    /* The last n % 64 bytes of a message, its padding and its length in bits (prefix
     * bytes already hashed + n) into tail; how many blocks that makes (1 or 2). */
    static size_t tsr_pad(unsigned char *tail, const unsigned char *message, size_t n, size_t prefix) {
        size_t rest = n % 64, blocks = rest + 9 > 64 ? 2 : 1;
        unsigned long long bits = (unsigned long long)(prefix + n) * 8;
        int k;
        memset(tail, 0, 128);      /* a constant size: a few vector stores */
        memcpy(tail, message + (n - rest), rest);
        tail[rest] = 0x80;
        for (k = 0; k < 8; k++) tail[64 * blocks - 1 - k] = (unsigned char)(bits >> (8 * k));
        return blocks;
    }
    static inline const unsigned char *tsr_block(const unsigned char *message, size_t full,
                                                 const unsigned char *tail, size_t i) {
        return i < full ? message + 64 * i : tail + 64 * (i - full);
    }
    /* The digest's bytes: h[0..7] big-endian. */
    TSR_NI static inline void tsr_big_endian(const unsigned int *h, unsigned char *out) {
        const __m128i big_endian = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
        _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)h), big_endian));
        _mm_storeu_si128((__m128i *)(out + 16),
                         _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(h + 4)), big_endian));
    }
    typedef struct {       /* the states derived from the key, cleansed after use */
        unsigned int inner[8], outer[8];
        unsigned char outer_block[64];
    } tsr_secret;
    /* Zero memory the compiler may not elide (a barrier that "reads" it afterwards):
     * inline stores, not a call, for the 128 bytes above. */
    static inline void tsr_cleanse(void *p, size_t n) {
        memset(p, 0, n);
        __asm__ __volatile__("" : : "r"(p) : "memory");
    }

    /* HMAC-SHA256(data) with the key's pad states and SHA-256(body), in step. */
    TSR_NI static int tsr_mac_and_digest(const tessera_hmac *ctx, const unsigned char *data, size_t n,
                                         const unsigned char *body, size_t body_n, unsigned char *mac,
                                         unsigned char *digest) {
        tsr_secret w;
        unsigned int body_state[8];
        unsigned char inner_tail[128], body_tail[128];    /* the token header's and the body's: public */
        size_t inner_full = n / 64, body_full = body_n / 64, i = 0, j = 0;
        size_t inner_blocks = inner_full + tsr_pad(inner_tail, data, n, 64);
        size_t body_blocks = body_full + tsr_pad(body_tail, body, body_n, 0);
        memcpy(w.inner, ctx->inner.h, sizeof(w.inner));
        memcpy(w.outer, ctx->outer.h, sizeof(w.outer));
        memcpy(body_state, tsr_iv, sizeof(body_state));
        for (; i < inner_blocks && j < body_blocks; i++, j++)
            tsr_compress2(w.inner, tsr_block(data, inner_full, inner_tail, i),
                          body_state, tsr_block(body, body_full, body_tail, j));
        for (; i < inner_blocks; i++)
            tsr_compress1(w.inner, tsr_block(data, inner_full, inner_tail, i));
        /* The outer message: the inner digest, padded; 64 + 32 bytes = 768 bits. */
        tsr_big_endian(w.inner, w.outer_block);
        memset(w.outer_block + 32, 0, 32);
        w.outer_block[32] = 0x80;
        w.outer_block[62] = 0x03;
        if (j < body_blocks) {
            tsr_compress2(w.outer, w.outer_block, body_state, tsr_block(body, body_full, body_tail, j));
            j++;
        } else {
            tsr_compress1(w.outer, w.outer_block);
        }
        for (; j < body_blocks; j++)
            tsr_compress1(body_state, tsr_block(body, body_full, body_tail, j));
        tsr_big_endian(w.outer, mac);
        tsr_big_endian(body_state, digest);
        tsr_cleanse(&w, sizeof(w));
        return 1;
    }
    #else
    #define TESSERA_SHA_NI_BUILD 0
    static int tsr_cpu_has_sha_ni(void) { return 0; }
    static int tsr_mac_and_digest(const tessera_hmac *ctx, const unsigned char *data, size_t n,
                                  const unsigned char *body, size_t body_n, unsigned char *mac,
                                  unsigned char *digest) { return 0; }
    #endif
    static int tessera_crypto_init(void) {
        tessera_sha_ni = tsr_cpu_has_sha_ni();
        return 1;
    }
    #else
    #define TESSERA_LEGACY_CRYPTO 0
    #include <openssl/core_names.h>
    #include <openssl/params.h>
    typedef EVP_MAC_CTX tessera_hmac;
    static EVP_MAC *tessera_mac_algorithm = NULL;
    static EVP_MD *tessera_sha256_algorithm = NULL;
    static EVP_MD_CTX *tessera_digest_ctx = NULL;

    static int tessera_crypto_init(void) {
        tessera_mac_algorithm = EVP_MAC_fetch(NULL, "HMAC", NULL);
        tessera_sha256_algorithm = EVP_MD_fetch(NULL, "SHA256", NULL);
        tessera_digest_ctx = EVP_MD_CTX_new();
        return tessera_mac_algorithm && tessera_sha256_algorithm && tessera_digest_ctx;
    }
    static tessera_hmac *tessera_hmac_new(const unsigned char *key, size_t keylen) {
        OSSL_PARAM params[2];
        EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(tessera_mac_algorithm);
        if (ctx == NULL) return NULL;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();
        if (EVP_MAC_init(ctx, key, keylen, params) != 1) {
            EVP_MAC_CTX_free(ctx);
            return NULL;
        }
        return ctx;
    }
    /* NULL key: re-initialise with the key set up once (no re-keying, no look-up). */
    static int tessera_hmac_sha256(tessera_hmac *ctx, const unsigned char *data, size_t n,
                                   unsigned char *out) {
        size_t outl = 0;
        return EVP_MAC_init(ctx, NULL, 0, NULL) == 1 && EVP_MAC_update(ctx, data, n) == 1
            && EVP_MAC_final(ctx, out, &outl, 32) == 1 && outl == 32;
    }
    static void tessera_hmac_free(tessera_hmac *ctx) { EVP_MAC_CTX_free(ctx); }
    static int tsr_cpu_has_sha_ni(void) { return 0; }     /* the in-step path needs SHA256_CTX states */
    static int tessera_sha256(const unsigned char *data, size_t n, unsigned char *out) {
        unsigned int outl = 0;
        return EVP_DigestInit_ex2(tessera_digest_ctx, tessera_sha256_algorithm, NULL) == 1
            && EVP_DigestUpdate(tessera_digest_ctx, data, n) == 1
            && EVP_DigestFinal_ex(tessera_digest_ctx, out, &outl) == 1 && outl == 32;
    }
    #endif
    /* HMAC-SHA256(data) and SHA-256(body): in step on SHA-NI, else one after the other. */
    static int tessera_mac_and_digest(tessera_hmac *ctx, const unsigned char *data, size_t n,
                                      const unsigned char *body, size_t body_n, unsigned char *mac,
                                      unsigned char *digest) {
    #if TESSERA_LEGACY_CRYPTO
        if (tessera_sha_ni) return tsr_mac_and_digest(ctx, data, n, body, body_n, mac, digest);
    #endif
        return tessera_hmac_sha256(ctx, data, n, mac) && tessera_sha256(body, body_n, digest);
    }
    """
    ctypedef struct tessera_hmac:
        pass
    int TESSERA_LEGACY_CRYPTO
    int tessera_crypto_init()
    tessera_hmac* tessera_hmac_new(const unsigned char* key, size_t keylen)
    int tessera_hmac_sha256(tessera_hmac* ctx, const unsigned char* data, size_t n, unsigned char* out)
    void tessera_hmac_free(tessera_hmac* ctx)
    int tessera_sha256(const unsigned char* data, size_t n, unsigned char* out)
    int tessera_mac_and_digest(tessera_hmac* ctx, const unsigned char* data, size_t n, const unsigned char* body,
                               size_t body_n, unsigned char* mac, unsigned char* digest)
    int tessera_sha_ni
    int tsr_cpu_has_sha_ni()
    int RAND_bytes(unsigned char* buf, int num)


cdef extern from *:
    """
    /* The token's fixed-length part checked 16 characters at a time (GCC / Clang vector
     * extensions: SSE2 on x86-64, NEON on ARM; a loop elsewhere). Each returns 1 when
     * every one of the 16 bytes at p is in the class. */
    #if defined(__GNUC__) || defined(__clang__)
    typedef unsigned char tsr_v16 __attribute__((vector_size(16)));
    typedef signed char tsr_m16 __attribute__((vector_size(16)));
    static inline int tsr_all_set(tsr_m16 m) {
        unsigned long long a, b;
        memcpy(&a, &m, 8);
        memcpy(&b, (const char *)&m + 8, 8);
        return (a & b) == ~0ULL;
    }
    static inline int tessera_hex16(const char *p) {
        tsr_v16 v;
        memcpy(&v, p, 16);
        return tsr_all_set((tsr_m16)((tsr_v16)(v - (unsigned char)48) < 10)
                           | (tsr_m16)((tsr_v16)(v - (unsigned char)97) < 6));             /* 0-9 a-f */
    }
    static inline int tessera_b64url16(const char *p) {
        tsr_v16 v;
        memcpy(&v, p, 16);
        return tsr_all_set((tsr_m16)((tsr_v16)(v - (unsigned char)65) < 26)                /* A-Z */
                           | (tsr_m16)((tsr_v16)(v - (unsigned char)97) < 26)              /* a-z */
                           | (tsr_m16)((tsr_v16)(v - (unsigned char)48) < 10)              /* 0-9 */
                           | (tsr_m16)(v == 45) | (tsr_m16)(v == 95));                     /* - _ */
    }
    #else
    static inline int tessera_hex16(const char *p) {
        int i;
        for (i = 0; i < 16; i++)
            if (!((p[i] >= 48 && p[i] <= 57) || (p[i] >= 97 && p[i] <= 102))) return 0;
        return 1;
    }
    static inline int tessera_b64url16(const char *p) {
        int i;
        for (i = 0; i < 16; i++)
            if (!((p[i] >= 65 && p[i] <= 90) || (p[i] >= 97 && p[i] <= 122) || (p[i] >= 48 && p[i] <= 57)
                  || p[i] == 45 || p[i] == 95)) return 0;
        return 1;
    }
    #endif
    """
    bint tessera_hex16(const char* p) noexcept nogil
    bint tessera_b64url16(const char* p) noexcept nogil


cdef enum:
    HASH_LEN = 32          # SHA-256 / HMAC-SHA256 output
    B64_HASH_LEN = 43      # unpadded base64url of 32 bytes
    NONCE_LEN = 32         # hex of 16 bytes
    MAX_KEY_ID_LEN = 32
    MAX_IAT_DIGITS = 12
    DECIMAL_BUF = 64       # > sign + "0." + 40 digits
    HEADER_BUF = 256

# Character classes of the token alphabet (bit flags over byte values).
cdef enum:
    CH_B64 = 1             # [A-Za-z0-9_-]: key id and base64url characters
    CH_HEX = 2             # [0-9a-f]: nonce
    CH_DIGIT = 4           # [0-9]
    CH_B64_LAST = 8        # a base64url character with its 2 low bits zero

cdef unsigned char _CLASS[256]
cdef const char* _B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
cdef const char* _HEX_DIGITS = b"0123456789abcdef"


cdef void _build_char_classes() noexcept:
    cdef int i
    for i in range(256):
        _CLASS[i] = 0
    for i in range(64):
        _CLASS[<unsigned char>_B64_ALPHABET[i]] |= CH_B64
        if i % 4 == 0:
            _CLASS[<unsigned char>_B64_ALPHABET[i]] |= CH_B64_LAST
    for i in range(16):
        _CLASS[<unsigned char>_HEX_DIGITS[i]] |= CH_HEX
    for i in range(10):
        _CLASS[<unsigned char>(48 + i)] |= CH_DIGIT


_build_char_classes()

if not tessera_crypto_init():
    raise ImportError("OpenSSL HMAC-SHA256 / SHA-256 unavailable")
#: Which OpenSSL API the build uses: "legacy" (SHA256_*) or "evp" (EVP_MAC, EVP_MD).
CRYPTO_BACKEND = "legacy" if TESSERA_LEGACY_CRYPTO else "evp"


def sha_ni(enabled=None):
    """Whether verification hashes the HMAC and the body digest in step with the x86 SHA
    extensions (the legacy build on a CPU that has them); ``enabled=False`` turns that
    off (and ``True`` back on where available), for tests and benchmarks of both paths."""
    global tessera_sha_ni
    if enabled is not None:
        tessera_sha_ni = 1 if enabled and TESSERA_LEGACY_CRYPTO and tsr_cpu_has_sha_ni() else 0
    return bool(tessera_sha_ni)

# Field layout, from core_ext.token_format (one definition for both twins).
cdef enum:
    KIND_STR = 0
    KIND_DECIMAL = 1
    KIND_BOOL = 2

cdef tuple _FIELDS = tuple(ORDER_FIELDS)
cdef Py_ssize_t _N_FIELDS = len(_FIELDS)
cdef int _KIND[64]
cdef bint _OPTIONAL[64]
if _N_FIELDS > 64:
    raise ImportError("too many order fields")
for _i, _name in enumerate(_FIELDS):
    _KIND[_i] = KIND_DECIMAL if _name in DECIMAL_FIELDS else KIND_BOOL if _name in BOOL_FIELDS else KIND_STR
    _OPTIONAL[_i] = _name in OPTIONAL_FIELDS
del _i, _name

cdef bytes _BODY_PREFIX = BODY_PREFIX
if TOKEN_VERSION != "v2":
    raise ImportError("the compiled token core implements format v2 only")
cdef str _OK = OK
cdef str _MISSING = TOKEN_MISSING
cdef str _MALFORMED = TOKEN_MALFORMED
cdef str _UNKNOWN_KEY = TOKEN_UNKNOWN_KEY
cdef str _BAD_SIGNATURE = TOKEN_BAD_SIGNATURE
cdef str _NOT_YET_VALID = TOKEN_NOT_YET_VALID
cdef str _EXPIRED = TOKEN_EXPIRED
cdef str _FIELDS_CHANGED = TOKEN_FIELDS_CHANGED
cdef str _REQUEST_INVALID = REQUEST_INVALID
cdef Py_ssize_t _MAX_DIGITS = MAX_DECIMAL_DIGITS
cdef long long _MAX_WINDOW = MAX_WINDOW_SECONDS
cdef long long _MAX_IAT = MAX_ISSUED_AT
cdef Py_ssize_t _MAX_TOKEN_LENGTH = MAX_TOKEN_LENGTH


# --------------------------------------------------------------------------- helpers

cdef char _B64_PAIRS[4096][2]       # base64url of every 12 bits: two characters


cdef void _build_b64_pairs() noexcept:
    cdef int v
    for v in range(4096):
        _B64_PAIRS[v][0] = _B64_ALPHABET[v >> 6]
        _B64_PAIRS[v][1] = _B64_ALPHABET[v & 63]


_build_b64_pairs()


cdef inline void _b64_hash(const unsigned char* d, char* out) noexcept nogil:
    """Unpadded base64url of 32 bytes into 43 characters (two characters per table look-up)."""
    cdef int i = 0, k = 0
    cdef unsigned int v
    while i < 30:
        v = (<unsigned int>d[i] << 16) | (<unsigned int>d[i + 1] << 8) | d[i + 2]
        memcpy(out + k, _B64_PAIRS[v >> 12], 2)
        memcpy(out + k + 2, _B64_PAIRS[v & 0xFFF], 2)
        i += 3
        k += 4
    v = (<unsigned int>d[30] << 16) | (<unsigned int>d[31] << 8)
    memcpy(out + 40, _B64_PAIRS[v >> 12], 2)
    out[42] = _B64_PAIRS[v & 0xFFF][0]


cdef int _sha256(const char* data, size_t n, unsigned char* out) except -1:
    if not tessera_sha256(<const unsigned char*>data, n, out):
        raise RuntimeError("OpenSSL SHA-256 failed")
    return 0


cdef inline void _copy(char* out, const char* src, Py_ssize_t n) noexcept nogil:
    """memcpy for the short values of an order without a library call: up to 32 bytes as
    two possibly overlapping moves of a fixed size."""
    cdef unsigned long long a0, a1, b0, b1
    cdef unsigned int c, d
    if n >= 16:
        if n > 32:
            memcpy(out, src, n)
            return
        memcpy(&a0, src, 8)
        memcpy(&a1, src + 8, 8)
        memcpy(&b0, src + n - 16, 8)
        memcpy(&b1, src + n - 8, 8)
        memcpy(out, &a0, 8)
        memcpy(out + 8, &a1, 8)
        memcpy(out + n - 16, &b0, 8)
        memcpy(out + n - 8, &b1, 8)
    elif n >= 8:
        memcpy(&a0, src, 8)
        memcpy(&b0, src + n - 8, 8)
        memcpy(out, &a0, 8)
        memcpy(out + n - 8, &b0, 8)
    elif n >= 4:
        memcpy(&c, src, 4)
        memcpy(&d, src + n - 4, 4)
        memcpy(out, &c, 4)
        memcpy(out + n - 4, &d, 4)
    else:
        while n > 0:
            n -= 1
            out[n] = src[n]


cdef Py_ssize_t _canonical_decimal(const char* s, Py_ssize_t n, char* out) noexcept nogil:
    """Write the canonical form of s[:n] into out; return its length, -1 (syntax) or -2 (digits)."""
    cdef Py_ssize_t i = 0, int_start, int_end, frac_start, frac_end, int_len, frac_len, k = 0
    cdef bint negative = False
    if n > 0 and (s[0] == c'-' or s[0] == c'+'):
        negative = s[0] == c'-'
        i = 1
    int_start = i
    while i < n and c'0' <= s[i] <= c'9':
        i += 1
    int_end = i
    frac_start = i
    frac_end = i
    if i < n and s[i] == c'.':
        i += 1
        frac_start = i
        while i < n and c'0' <= s[i] <= c'9':
            i += 1
        frac_end = i
    if i != n or (int_end == int_start and frac_end == frac_start):
        return -1
    while int_start < int_end and s[int_start] == c'0':
        int_start += 1
    while frac_end > frac_start and s[frac_end - 1] == c'0':
        frac_end -= 1
    int_len = int_end - int_start
    frac_len = frac_end - frac_start
    if int_len + frac_len > _MAX_DIGITS:
        return -2
    if int_len + frac_len == 0:
        out[0] = c'0'
        return 1
    if negative:
        out[k] = c'-'
        k += 1
    if int_len:
        _copy(out + k, s + int_start, int_len)
        k += int_len
    else:
        out[k] = c'0'
        k += 1
    if frac_len:
        out[k] = c'.'
        _copy(out + k + 1, s + frac_start, frac_len)
        k += 1 + frac_len
    return k


cdef Py_ssize_t _canonical_decimal_str(str text, char* out, object field) except -1:
    """Canonical form of a str into out (DECIMAL_BUF bytes); raises CanonicalEncodingError."""
    cdef Py_ssize_t length = -1
    if PyUnicode_IS_ASCII(text):
        length = _canonical_decimal(<const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), out)
    if length == -2:
        raise CanonicalEncodingError(f"{TOO_MANY_DIGITS}: {preview(text)}", field)
    if length < 0:
        raise CanonicalEncodingError(f"{NOT_A_DECIMAL}: {preview(text)}", field)
    return length


def canonical_decimal(s):
    """Return the canonical spelling of a plain decimal number.

    Accepts an optional sign, digits, and an optional "." with digits (".5" and
    "5." too); drops "+", leading zeros of the integer part (one "0" stays),
    trailing zeros of the fraction, a bare "."; "-0" becomes "0".

    Raises
    ------
    CanonicalEncodingError
        Not a str, not plain decimal notation (exponent, whitespace, NaN, ...), or
        more than 40 significant digits.
    """
    cdef char out[DECIMAL_BUF]
    cdef Py_ssize_t length
    if not isinstance(s, str):
        raise CanonicalEncodingError(f"decimal must be a str, got {type_name(s)}")
    length = _canonical_decimal_str(s, out, None)
    return PyUnicode_DecodeASCII(out, length, NULL)


# --------------------------------------------------------------------------- canonical body

cdef struct Buffer:
    char* data
    Py_ssize_t length
    Py_ssize_t capacity
    bint owned             # data is PyMem memory (else a caller's stack buffer)


cdef int _reserve(Buffer* buf, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = buf.length + extra
    cdef Py_ssize_t capacity
    cdef char* grown
    if need <= buf.capacity:
        return 0
    capacity = buf.capacity * 2 if buf.capacity * 2 > need else need
    if buf.owned:
        grown = <char*>PyMem_Realloc(buf.data, capacity)
    else:
        grown = <char*>PyMem_Malloc(capacity)
        if grown != NULL:
            memcpy(grown, buf.data, buf.length)
    if grown == NULL:
        raise MemoryError()
    buf.data = grown
    buf.capacity = capacity
    buf.owned = True
    return 0


cdef inline int _append_netstring(Buffer* buf, const char* value, Py_ssize_t n) except -1:
    """Append ``<n>:<value>,``."""
    if buf.length + n + 24 > buf.capacity:
        _reserve(buf, n + 24)
    buf.length = _put_netstring(buf.data + buf.length, value, n) - buf.data
    return 0


cdef int _append_decimal_field(Buffer* buf, object value, object name) except -1:
    cdef char out[DECIMAL_BUF]
    cdef Py_ssize_t length
    cdef str text
    if value is None:
        return _append_netstring(buf, b"", 0)
    if isinstance(value, str):
        text = <str>value
    elif isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(int(value))
    else:
        raise CanonicalEncodingError(f"must be a decimal str, int or Decimal, got {type_name(value)}", name)
    if PyUnicode_GET_LENGTH(text) == 0:
        return _append_netstring(buf, b"", 0)
    length = _canonical_decimal_str(text, out, name)
    return _append_netstring(buf, out, length)


cdef int _append_bool_field(Buffer* buf, object value, object name) except -1:
    if value is True or (isinstance(value, str) and value == "true"):
        return _append_netstring(buf, b"true", 4)
    if value is False or (isinstance(value, str) and value == "false"):
        return _append_netstring(buf, b"false", 5)
    raise CanonicalEncodingError(f'must be a bool or "true"/"false", got {preview(value)}', name)


cdef int _append_str_field(Buffer* buf, object value, object name) except -1:
    cdef Py_UCS4 ch
    cdef const char* data
    cdef Py_ssize_t n
    if not isinstance(value, str):
        raise CanonicalEncodingError(f"must be a str, got {type_name(value)}", name)
    for ch in <str>value:
        if ch < 0x20 or ch == 0x7f:
            raise CanonicalEncodingError("contains a control character", name)
    try:
        data = PyUnicode_AsUTF8AndSize(value, &n)
    except UnicodeEncodeError:
        raise CanonicalEncodingError("not encodable as UTF-8", name) from None
    return _append_netstring(buf, data, n)


def canonical_order_body(fields):
    """Return the canonical encoding of an order's economic fields (the signed body).

    ``b"tessera.order.v2"`` followed by one netstring ``<len>:<utf-8 value>,`` per
    field of ``ORDER_FIELDS``, in that order. Keys not in ``ORDER_FIELDS`` are ignored.

    Raises
    ------
    CanonicalEncodingError
        A required field is missing, a value has the wrong type, is not a plain
        decimal (decimal fields), contains a control character or is not valid
        UTF-8 (lone surrogates). The error names the field.
    """
    cdef Buffer buf
    cdef Py_ssize_t i
    cdef PyObject* item
    cdef object value
    cdef bint exact_dict = type(fields) is dict
    buf.capacity = 256
    buf.length = 0
    buf.owned = True
    buf.data = <char*>PyMem_Malloc(buf.capacity)
    if buf.data == NULL:
        raise MemoryError()
    try:
        memcpy(buf.data, PyBytes_AS_STRING(_BODY_PREFIX), PyBytes_GET_SIZE(_BODY_PREFIX))
        buf.length = PyBytes_GET_SIZE(_BODY_PREFIX)
        for i in range(_N_FIELDS):
            name = _FIELDS[i]
            if exact_dict:
                item = PyDict_GetItem(fields, name)
                if item == NULL:
                    if not _OPTIONAL[i]:
                        raise CanonicalEncodingError("missing", name)
                    value = None
                else:
                    value = <object>item
            else:
                try:
                    value = fields[name]
                except KeyError:
                    if not _OPTIONAL[i]:
                        raise CanonicalEncodingError("missing", name) from None
                    value = None
            if _KIND[i] == KIND_DECIMAL:
                _append_decimal_field(&buf, value, name)
            elif _KIND[i] == KIND_BOOL:
                _append_bool_field(&buf, value, name)
            else:
                _append_str_field(&buf, value, name)
        return PyBytes_FromStringAndSize(buf.data, buf.length)
    finally:
        PyMem_Free(buf.data)


# --------------------------------------------------------------------------- result and keys

cdef struct ParsedToken:
    Py_ssize_t key_id_len      # key id starts at offset 3 ("v2.")
    Py_ssize_t nonce_offset
    Py_ssize_t digest_offset
    Py_ssize_t signature_offset
    long long issued_at


@cython.no_gc
@cython.freelist(16)
cdef class VerifyResult:
    """Outcome of :func:`verify_token` (immutable).

    ``ok`` is True only with reason ``"OK"``. ``key_id``, ``issued_at`` and
    ``nonce`` are taken from the token once it parsed (None for
    TOKEN_MISSING / TOKEN_MALFORMED); before TOKEN_NOT_YET_VALID they are unauthenticated.

    A verdict of the compiled verifiers keeps the token's issued_at, nonce and (for
    TOKEN_UNKNOWN_KEY) key id as C values and makes the Python objects on first read:
    a check whose caller reads only ``ok`` / ``reason`` creates no int or str. The
    instances take no part in the cyclic GC (no_gc): the verifiers give them only str,
    int and None, and they cannot be changed afterwards.
    """

    cdef readonly bint ok
    cdef readonly str reason
    cdef object _key_id
    cdef object _issued_at
    cdef object _nonce
    cdef unsigned char _pending          # PENDING_* bits: values still in the C fields below
    cdef unsigned char _key_id_len
    cdef long long _iat
    cdef char _nonce_chars[NONCE_LEN]
    cdef char _key_id_chars[MAX_KEY_ID_LEN]

    def __init__(self, str reason, key_id=None, issued_at=None, nonce=None):
        self.ok = reason == _OK
        self.reason = reason
        self._key_id = key_id
        self._issued_at = issued_at
        self._nonce = nonce
        self._pending = 0

    @property
    def key_id(self):
        if self._pending & PENDING_KEY_ID:
            self._key_id = _ascii(self._key_id_chars, self._key_id_len)
            self._pending &= ~PENDING_KEY_ID
        return self._key_id

    @property
    def issued_at(self):
        if self._pending & PENDING_ISSUED_AT:
            self._issued_at = self._iat
            self._pending &= ~PENDING_ISSUED_AT
        return self._issued_at

    @property
    def nonce(self):
        if self._pending & PENDING_NONCE:
            self._nonce = _ascii(self._nonce_chars, NONCE_LEN)
            self._pending &= ~PENDING_NONCE
        return self._nonce

    cdef tuple _key(self):
        return (self.ok, self.reason, self.key_id, self.issued_at, self.nonce)

    def __eq__(self, other):
        if not isinstance(other, VerifyResult):
            return NotImplemented
        return self._key() == (<VerifyResult>other)._key()

    def __hash__(self):
        return hash(self._key())

    def __bool__(self):
        return self.ok

    def __reduce__(self):
        return (VerifyResult, (self.reason, self.key_id, self.issued_at, self.nonce))

    def __repr__(self):
        return (f"VerifyResult(ok={self.ok!r}, reason={self.reason!r}, key_id={self.key_id!r}, "
                f"issued_at={self.issued_at!r}, nonce={self.nonce!r})")


cdef enum:
    PENDING_KEY_ID = 1
    PENDING_ISSUED_AT = 2
    PENDING_NONCE = 4


cdef inline VerifyResult _result(str reason, object key_id, object issued_at, object nonce):
    cdef VerifyResult result = VerifyResult.__new__(VerifyResult)
    result.ok = reason is _OK
    result.reason = reason
    result._key_id = key_id
    result._issued_at = issued_at
    result._nonce = nonce
    return result


cdef inline VerifyResult _token_result(str reason, object key_id, const char* token, ParsedToken* parsed):
    """A verdict on a parsed token: issued_at and the nonce (and the key id when
    ``key_id`` is None: an unknown key) stay C values until read."""
    cdef VerifyResult result = VerifyResult.__new__(VerifyResult)
    result.ok = reason is _OK
    result.reason = reason
    result._iat = parsed.issued_at
    memcpy(result._nonce_chars, token + parsed.nonce_offset, NONCE_LEN)
    if key_id is None:
        memcpy(result._key_id_chars, token + 3, parsed.key_id_len)
        result._key_id_len = <unsigned char>parsed.key_id_len
        result._pending = PENDING_KEY_ID | PENDING_ISSUED_AT | PENDING_NONCE
    else:
        result._key_id = key_id
        result._pending = PENDING_ISSUED_AT | PENDING_NONCE
    return result


cdef class _HmacKey:
    """One key: its id and a keyed HMAC-SHA256 context (the secret is not kept elsewhere)."""

    cdef tessera_hmac* ctx
    cdef readonly str key_id
    cdef bytes key_id_bytes

    def __cinit__(self, str key_id not None, bytes secret not None):
        self.key_id = key_id
        self.key_id_bytes = key_id.encode("ascii")
        self.ctx = tessera_hmac_new(<const unsigned char*>PyBytes_AS_STRING(secret),
                                    <size_t>PyBytes_GET_SIZE(secret))
        if self.ctx == NULL:
            raise RuntimeError("OpenSSL HMAC key setup failed")

    def __dealloc__(self):
        if self.ctx != NULL:
            tessera_hmac_free(self.ctx)
            self.ctx = NULL

    def __reduce__(self):
        raise TypeError("cannot pickle a key")

    cdef int mac(self, const char* data, size_t n, unsigned char* out) except -1:
        """HMAC-SHA256 of data with the keyed context (re-initialised, not re-keyed)."""
        if not tessera_hmac_sha256(self.ctx, <const unsigned char*>data, n, out):
            raise RuntimeError("OpenSSL HMAC failed")
        return 0

    cdef int mac_and_digest(self, const char* data, size_t n, const char* body, size_t body_n,
                            unsigned char* mac, unsigned char* digest) except -1:
        """HMAC-SHA256 of data and SHA-256 of body (in step where the CPU allows)."""
        if not tessera_mac_and_digest(self.ctx, <const unsigned char*>data, n, <const unsigned char*>body, body_n,
                                      mac, digest):
            raise RuntimeError("OpenSSL HMAC failed")
        return 0


cdef class KeyRing:
    """HMAC keys of the risk token: the current one signs, all of them verify.

    Parameters
    ----------
    current_key_id : str
        Id of the signing key, ``[A-Za-z0-9_-]{1,32}``.
    current_secret : bytes
        At least 32 bytes.
    previous : sequence of (str, bytes)
        Keys still accepted for verification (rotation).

    Raises
    ------
    KeyConfigError
        Invalid key id, short secret or duplicate key id. Never shows a secret.
    """

    cdef tuple _keys          # of _HmacKey, the current key first

    def __cinit__(self, *args, **kwargs):
        self._keys = ()

    def __init__(self, current_key_id, current_secret, previous=()):
        material = keys.check_key_material(current_key_id, current_secret, previous)
        self._keys = tuple([_HmacKey(key_id, secret) for key_id, secret in material])

    @classmethod
    def from_env(cls, environ=None):
        """Build the key ring from ``AIS_RISK_HMAC_*`` variables (see ``core_ext.keys``).

        Raises
        ------
        KeyConfigError
            Missing, empty or short secret, or invalid key id; names the variable.
        """
        material = keys.read_key_material_from_env(os.environ if environ is None else environ)
        return cls(material[0][0], material[0][1], material[1:])

    @property
    def current_key_id(self):
        """Id of the key new tokens are signed with."""
        if not self._keys:
            return None
        return (<_HmacKey>self._keys[0]).key_id

    def key_ids(self):
        """Ids of all accepted keys, the current one first."""
        return tuple([(<_HmacKey>key).key_id for key in self._keys])

    def __repr__(self):
        return f"KeyRing(current_key_id={self.current_key_id!r}, key_ids={self.key_ids()!r})"

    def __reduce__(self):
        raise TypeError("KeyRing cannot be pickled (it holds secrets)")

    cdef _HmacKey find(self, const char* key_id, Py_ssize_t n):
        cdef _HmacKey key
        for item in self._keys:
            key = <_HmacKey>item
            if (PyBytes_GET_SIZE(key.key_id_bytes) == n
                    and memcmp(PyBytes_AS_STRING(key.key_id_bytes), key_id, n) == 0):
                return key
        return None


# --------------------------------------------------------------------------- sign / verify

cdef inline bint _small_window(object value, long long* out):
    """Exact int in [0, MAX_WINDOW_SECONDS] (the fast path; anything else is checked in Python)."""
    cdef int overflow = 0
    cdef long long v
    if type(value) is not int:
        return False
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < 0 or v > _MAX_WINDOW:
        return False
    out[0] = v
    return True


cdef inline bint _b64_hash_equal(const char* a, const char* b) noexcept nogil:
    """Constant-time equality of two 43-character base64url hashes: every byte is
    compared whatever differs (five 8-byte words and the last three bytes, folded
    with XOR and OR, no early exit)."""
    cdef unsigned long long x, y, diff = 0
    cdef int i
    for i in range(0, 40, 8):
        memcpy(&x, a + i, 8)
        memcpy(&y, b + i, 8)
        diff |= x ^ y
    for i in range(40, B64_HASH_LEN):
        diff |= <unsigned char>(a[i] ^ b[i])
    return diff == 0


cdef bint _parse_token(const char* p, Py_ssize_t n, ParsedToken* out) noexcept nogil:
    """Match v2.<kid>.<iat>.<nonce>.<digest>.<sig> exactly (see docs/token.md)."""
    cdef Py_ssize_t i = 3, start
    cdef long long iat = 0
    if n < 3 or p[0] != c'v' or p[1] != c'2' or p[2] != c'.':
        return False
    start = i
    while i < n and (_CLASS[<unsigned char>p[i]] & CH_B64):
        i += 1
    if i == start or i - start > MAX_KEY_ID_LEN or i >= n or p[i] != c'.':
        return False
    out.key_id_len = i - start
    i += 1
    start = i
    while i < n and (_CLASS[<unsigned char>p[i]] & CH_DIGIT):
        iat = iat * 10 + (p[i] - c'0')
        i += 1
        if i - start > MAX_IAT_DIGITS:
            return False
    if i == start or i >= n or p[i] != c'.' or (p[start] == c'0' and i - start > 1):
        return False
    out.issued_at = iat
    i += 1
    # The rest has a fixed shape, <32 hex>.<43 base64url>.<43 base64url>: checked 16
    # characters at a time (the 42 leading characters of a hash as 0-15, 16-31, 26-41),
    # each hash's last character by its class (its two low bits are zero).
    if n - i != NONCE_LEN + 1 + B64_HASH_LEN + 1 + B64_HASH_LEN:
        return False
    out.nonce_offset = i
    out.digest_offset = i + NONCE_LEN + 1
    out.signature_offset = out.digest_offset + B64_HASH_LEN + 1
    return (tessera_hex16(p + i) and tessera_hex16(p + i + 16)
            and p[out.digest_offset - 1] == c'.' and p[out.signature_offset - 1] == c'.'
            and _b64_hash_chars(p + out.digest_offset) and _b64_hash_chars(p + out.signature_offset))


cdef inline bint _b64_hash_chars(const char* p) noexcept nogil:
    """The 43 characters at p are an unpadded base64url hash of 32 bytes."""
    return (tessera_b64url16(p) and tessera_b64url16(p + 16) and tessera_b64url16(p + B64_HASH_LEN - 1 - 16)
            and (_CLASS[<unsigned char>p[B64_HASH_LEN - 1]] & CH_B64_LAST) != 0)


cdef inline str _ascii(const char* p, Py_ssize_t n):
    return PyUnicode_DecodeASCII(p, n, NULL)


def sign_token(KeyRing keyring not None, bytes body not None, issued_at, nonce=None):
    """Return a token ``v2.<kid>.<iat>.<nonce>.<digest>.<sig>`` for an order body.

    Parameters
    ----------
    keyring : KeyRing
        Signs with its current key.
    body : bytes
        ``canonical_order_body(order)``.
    issued_at : int
        Unix seconds, ``0 <= issued_at <= 999999999999``.
    nonce : str, optional
        32 lowercase hex characters; random (16 bytes from OpenSSL's CSPRNG, RAND_bytes)
        when None.

    Raises
    ------
    TypeError, ValueError
        Wrong argument types, issued_at out of range, or a malformed nonce.
    """
    cdef char header[HEADER_BUF]
    cdef unsigned char raw[HASH_LEN]
    cdef unsigned char nonce_raw[16]
    cdef const char* nonce_chars
    cdef Py_ssize_t n = 0, k
    cdef int overflow = 0
    cdef long long iat = -1
    cdef _HmacKey key
    if not keyring._keys:
        raise ValueError("KeyRing is not initialised")
    key = <_HmacKey>keyring._keys[0]

    if type(issued_at) is int:
        iat = PyLong_AsLongLongAndOverflow(issued_at, &overflow)
    if overflow or iat < 0 or iat > _MAX_IAT:
        iat = check_issued_at(issued_at)      # raises with the shared message

    memcpy(header, b"v2.", 3)
    n = 3
    memcpy(header + n, PyBytes_AS_STRING(key.key_id_bytes), PyBytes_GET_SIZE(key.key_id_bytes))
    n += PyBytes_GET_SIZE(key.key_id_bytes)
    header[n] = c'.'
    n += 1
    n = _put_digits(header + n, <unsigned long long>iat) - header
    header[n] = c'.'
    n += 1
    if nonce is None:
        # OpenSSL's CSPRNG (a DRBG seeded from the OS), without a system call per token.
        if RAND_bytes(nonce_raw, 16) != 1:
            raise RuntimeError("OpenSSL RAND_bytes failed")
        for k in range(16):
            header[n + 2 * k] = _HEX_DIGITS[nonce_raw[k] >> 4]
            header[n + 2 * k + 1] = _HEX_DIGITS[nonce_raw[k] & 15]
    else:
        if not isinstance(nonce, str) or not PyUnicode_IS_ASCII(nonce) or PyUnicode_GET_LENGTH(nonce) != NONCE_LEN:
            raise ValueError(NONCE_ERROR)
        nonce_chars = <const char*>PyUnicode_DATA(nonce)
        for k in range(NONCE_LEN):
            if not (_CLASS[<unsigned char>nonce_chars[k]] & CH_HEX):
                raise ValueError(NONCE_ERROR)
        memcpy(header + n, nonce_chars, NONCE_LEN)
    n += NONCE_LEN
    header[n] = c'.'
    n += 1
    _sha256(PyBytes_AS_STRING(body), <size_t>PyBytes_GET_SIZE(body), raw)
    _b64_hash(raw, header + n)
    n += B64_HASH_LEN
    key.mac(header, <size_t>n, raw)
    header[n] = c'.'
    _b64_hash(raw, header + n + 1)
    return _ascii(header, n + 1 + B64_HASH_LEN)


cdef int _window(object now, object ttl_seconds, object skew_seconds, double* now_f,
                 long long* ttl, long long* skew) except -1:
    """The verification window, checked (caller errors raise with the shared messages)."""
    if (type(now) is float and isfinite(PyFloat_AS_DOUBLE(now))
            and _small_window(ttl_seconds, ttl) and _small_window(skew_seconds, skew)):
        now_f[0] = PyFloat_AS_DOUBLE(now)
    else:
        now_f[0] = check_verify_window(now, ttl_seconds, skew_seconds)   # raises on caller errors
        ttl[0] = ttl_seconds
        skew[0] = skew_seconds
    return 0


cdef VerifyResult _verify(KeyRing keyring, const char* p, Py_ssize_t n, const char* body,
                          Py_ssize_t body_n, double now_f, long long ttl, long long skew):
    """The checks of :func:`verify_token` on an ASCII token of ``n`` (> 0) bytes."""
    cdef ParsedToken parsed
    cdef _HmacKey key
    cdef unsigned char raw[HASH_LEN]
    cdef unsigned char digest[HASH_LEN]
    cdef char encoded[B64_HASH_LEN]
    if n > _MAX_TOKEN_LENGTH or not _parse_token(p, n, &parsed):
        return _result(_MALFORMED, None, None, None)
    key = keyring.find(p + 3, parsed.key_id_len)
    if key is None:
        return _token_result(_UNKNOWN_KEY, None, p, &parsed)

    # The body digest is computed with the MAC (it is used only once the signature held).
    key.mac_and_digest(p, <size_t>(parsed.signature_offset - 1), body, <size_t>body_n, raw, digest)
    _b64_hash(raw, encoded)
    if not _b64_hash_equal(encoded, p + parsed.signature_offset):
        return _token_result(_BAD_SIGNATURE, key.key_id, p, &parsed)
    if <double>parsed.issued_at > now_f + <double>skew:
        return _token_result(_NOT_YET_VALID, key.key_id, p, &parsed)
    if now_f >= <double>(parsed.issued_at + ttl + skew):
        return _token_result(_EXPIRED, key.key_id, p, &parsed)
    _b64_hash(digest, encoded)
    if not _b64_hash_equal(encoded, p + parsed.digest_offset):
        return _token_result(_FIELDS_CHANGED, key.key_id, p, &parsed)
    return _token_result(_OK, key.key_id, p, &parsed)


def verify_token(KeyRing keyring not None, token, bytes body not None, now,
                 ttl_seconds=300, skew_seconds=5):
    """Check a token against an order body; never raises on any ``token`` value.

    Checks, in order: missing, malformed, unknown key, signature (constant time),
    not yet valid (``iat > now + skew``), expired (``now >= iat + ttl + skew``),
    fields changed (body digest differs).

    Returns
    -------
    VerifyResult
        ``ok`` and a reason code (see ``core_ext.token_format.REASONS``).

    Raises
    ------
    TypeError, ValueError
        Only for caller errors: keyring/body of the wrong type, ``now`` not a
        finite number, a window not an int in ``[0, 1e9]``.
    """
    cdef double now_f
    cdef long long ttl = 0, skew = 0
    cdef Py_ssize_t n
    _window(now, ttl_seconds, skew_seconds, &now_f, &ttl, &skew)
    if token is None:
        return _result(_MISSING, None, None, None)
    if not isinstance(token, str):
        return _result(_MALFORMED, None, None, None)
    n = PyUnicode_GET_LENGTH(token)
    if n == 0:
        return _result(_MISSING, None, None, None)
    if n > _MAX_TOKEN_LENGTH or not PyUnicode_IS_ASCII(token):
        return _result(_MALFORMED, None, None, None)
    return _verify(keyring, <const char*>PyUnicode_DATA(token), n, PyBytes_AS_STRING(body),
                   PyBytes_GET_SIZE(body), now_f, ttl, skew)


# --------------------------------------------------------------------------- from the wire
# The request as it arrived (SubmitOrderRequest, ExecuteOrderRequest: the order in field
# 1, the token in field 2), read in place: the bound fields' bytes are located, checked
# and written into the canonical body without creating a Python object per field.

cdef enum:
    MAX_FIELD_NUMBER = (1 << 29) - 1
    WIRE_TEXT = 0          # a string field read as bytes (str or decimal kind)
    WIRE_ENUM = 1
    WIRE_FLAG = 2          # a bool
    MAX_ENUM_VALUE = 16
    WIRE_SLOTS = 24        # the bound fields, in ORDER_FIELDS order (the body's)
    WIRE_NUMBERS = 48      # field numbers 0..47: those of the bound fields are below
    ORDER_FIELD = 1        # token_format.WIRE_ORDER_FIELD
    TOKEN_FIELD = 2        # token_format.WIRE_TOKEN_FIELD

cdef signed char _WIRE_SLOT[WIRE_NUMBERS]  # by field number: the bound field's slot, or -1
cdef int _WIRE_KIND[WIRE_SLOTS]            # by slot
cdef const char* _ENUM_NAMES[WIRE_SLOTS][MAX_ENUM_VALUE]    # the name's netstring "<len>:<name>,"
cdef Py_ssize_t _ENUM_NAME_LEN[WIRE_SLOTS][MAX_ENUM_VALUE]
cdef list _ENUM_NAME_BYTES = []    # keeps the names' bytes alive
cdef Py_ssize_t _WIRE_BODY_SLACK = 0       # see _wire_body


cdef void _build_wire_tables() except *:
    global _WIRE_BODY_SLACK
    cdef Py_ssize_t i, v, number
    cdef bytes encoded
    if (_N_FIELDS > WIRE_SLOTS or max(WIRE_FIELD_NUMBERS.values()) >= WIRE_NUMBERS
            or (WIRE_ORDER_FIELD, WIRE_TOKEN_FIELD) != (ORDER_FIELD, TOKEN_FIELD)):
        raise ImportError("the compiled wire reader does not match core_ext.token_format")
    for number in range(WIRE_NUMBERS):
        _WIRE_SLOT[number] = -1
    for i in range(WIRE_SLOTS):
        for v in range(MAX_ENUM_VALUE):
            _ENUM_NAMES[i][v] = NULL
            _ENUM_NAME_LEN[i][v] = 0
    # Room for each field's netstring beyond its text (see _wire_body): a text field's
    # length digits and separators, the longest netstring of an enum or a bool.
    slack = PyBytes_GET_SIZE(_BODY_PREFIX)
    for i in range(_N_FIELDS):
        name = _FIELDS[i]
        _WIRE_SLOT[WIRE_FIELD_NUMBERS[name]] = <signed char>i
        if name in WIRE_ENUMS:
            _WIRE_KIND[i] = WIRE_ENUM
            longest = 0
            for value, text in WIRE_ENUMS[name].items():
                if not 0 <= value < MAX_ENUM_VALUE:
                    raise ImportError("enum value out of the compiled table's range")
                encoded = b"%d:%s," % (len(text), text.encode("ascii"))     # the whole netstring
                _ENUM_NAME_BYTES.append(encoded)
                _ENUM_NAMES[i][value] = PyBytes_AS_STRING(encoded)
                _ENUM_NAME_LEN[i][value] = PyBytes_GET_SIZE(encoded)
                longest = max(longest, len(encoded))
            slack += longest
        elif name in BOOL_FIELDS:
            _WIRE_KIND[i] = WIRE_FLAG
            slack += len(b"5:false,")
        else:
            _WIRE_KIND[i] = WIRE_TEXT
            slack += 1 + 24      # the canonical decimal's extra byte, the digits, ":" and ","
    _WIRE_BODY_SLACK = slack


_build_wire_tables()


cdef struct WireOrder:
    const unsigned char* text[WIRE_SLOTS]      # by slot: the last value's bytes
    Py_ssize_t text_len[WIRE_SLOTS]
    unsigned long long number[WIRE_SLOTS]      # enums and bools (0 when absent)
    const unsigned char* token
    Py_ssize_t token_len


cdef inline Py_ssize_t _read_varint(const unsigned char* p, Py_ssize_t n, Py_ssize_t i,
                                    unsigned long long* out) noexcept nogil:
    """The varint at p[i] into out; the offset after it, or -1 (at most 10 bytes, 64 bits)."""
    cdef unsigned long long value = 0
    cdef int count = 0
    cdef unsigned char byte
    if i < n and p[i] < 0x80:      # tags and short lengths: one byte
        out[0] = p[i]
        return i + 1
    while count < 10:
        if i >= n:
            return -1
        byte = p[i]
        i += 1
        if count == 9 and byte > 1:
            return -1
        value |= (<unsigned long long>(byte & 0x7F)) << (7 * count)
        if byte < 0x80:
            out[0] = value
            return i
        count += 1
    return -1


cdef inline Py_ssize_t _next_field(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, unsigned long long* number,
                            int* wire, unsigned long long* value, Py_ssize_t* start) noexcept nogil:
    """Read the field at p[i]: its number, wire type and value (a varint's value, or a
    length-delimited field's length with its first byte at start). The offset after
    it, or -1 when malformed (groups included, and a tag not in its shortest encoding:
    protobuf's pure-Python runtime takes such a tag for an unknown field)."""
    cdef unsigned long long tag
    cdef Py_ssize_t tag_start = i
    i = _read_varint(p, n, i, &tag)
    if i < 0 or (i - tag_start > 1 and p[i - 1] == 0):
        return -1
    number[0] = tag >> 3
    wire[0] = <int>(tag & 7)
    if number[0] == 0 or number[0] > MAX_FIELD_NUMBER:
        return -1
    if wire[0] == 0:
        return _read_varint(p, n, i, value)
    if wire[0] == 2:
        i = _read_varint(p, n, i, value)
        if i < 0 or value[0] > <unsigned long long>(n - i):
            return -1
        start[0] = i
        return i + <Py_ssize_t>value[0]
    if wire[0] == 1:
        return i + 8 if n - i >= 8 else -1
    if wire[0] == 5:
        return i + 4 if n - i >= 4 else -1
    return -1


cdef bint _read_request(const unsigned char* p, Py_ssize_t n, WireOrder* order) noexcept nogil:
    """Locate the order's bound fields and the token (the last value of each wins, and
    occurrences of the order merge, as protobuf parses them). False when malformed."""
    cdef Py_ssize_t i = 0, j, end, start = 0, inner_start = 0
    cdef unsigned long long number = 0, value = 0, inner_number = 0, inner_value = 0
    cdef int wire = 0, inner_wire = 0, kind, slot
    while i < n:
        i = _next_field(p, n, i, &number, &wire, &value, &start)
        if i < 0:
            return False
        if wire != 2:
            continue
        if number == TOKEN_FIELD:
            order.token = p + start
            order.token_len = i - start
        elif number == ORDER_FIELD:
            j = start
            end = i
            while j < end:
                j = _next_field(p, end, j, &inner_number, &inner_wire, &inner_value, &inner_start)
                if j < 0:
                    return False
                if inner_number >= WIRE_NUMBERS:
                    continue
                slot = _WIRE_SLOT[inner_number]
                if slot < 0:
                    continue
                kind = _WIRE_KIND[slot]
                if kind == WIRE_TEXT:
                    if inner_wire == 2:
                        order.text[slot] = p + inner_start
                        order.text_len[slot] = j - inner_start
                elif inner_wire == 0:
                    order.number[slot] = inner_value
    return True


cdef inline char* _put_digits(char* out, unsigned long long value) noexcept nogil:
    """``value`` in decimal digits at out; the end."""
    cdef char digits[24]
    cdef int count = 0
    while True:
        digits[count] = <char>(48 + value % 10)
        count += 1
        value //= 10
        if value == 0:
            break
    while count > 0:
        count -= 1
        out[0] = digits[count]
        out += 1
    return out


cdef inline char* _put_netstring(char* out, const char* value, Py_ssize_t n) noexcept nogil:
    """``<n>:<value>,`` at out (the caller has made room); the end."""
    if n < 10:                      # the usual lengths, without the digit loop
        out[0] = <char>(48 + n)
        out += 1
    elif n < 100:
        out[0] = <char>(48 + n // 10)
        out[1] = <char>(48 + n % 10)
        out += 2
    else:
        out = _put_digits(out, <unsigned long long>n)
    out[0] = c':'
    _copy(out + 1, value, n)
    out[n + 1] = c','
    return out + n + 2


cdef Py_ssize_t _wire_body(WireOrder* order, Buffer* buf) except -2:
    """Write the canonical body into buf; its length, or -1 when there is none.

    Room for the whole body is made once: the prefix, each text field's bytes (a
    canonical decimal is at most one byte longer than its text) and, per field, a
    netstring's length digits and separators or the longest enum / bool netstring."""
    cdef Py_ssize_t slot, length, bound = _WIRE_BODY_SLACK
    cdef unsigned long long raw
    cdef long long value
    cdef char decimal[DECIMAL_BUF]
    cdef char* out
    for slot in range(_N_FIELDS):
        bound += order.text_len[slot]
    buf.length = 0
    if bound > buf.capacity:
        _reserve(buf, bound)
    out = buf.data
    _copy(out, PyBytes_AS_STRING(_BODY_PREFIX), PyBytes_GET_SIZE(_BODY_PREFIX))
    out += PyBytes_GET_SIZE(_BODY_PREFIX)
    for slot in range(_N_FIELDS):
        if _WIRE_KIND[slot] == WIRE_ENUM:
            raw = order.number[slot] & 0xFFFFFFFFULL          # an int32 on the wire
            value = <long long>raw - (0x100000000LL if raw >= 0x80000000ULL else 0)
            if value < 0 or value >= MAX_ENUM_VALUE or _ENUM_NAMES[slot][value] == NULL:
                return -1
            _copy(out, _ENUM_NAMES[slot][value], _ENUM_NAME_LEN[slot][value])   # a whole netstring
            out += _ENUM_NAME_LEN[slot][value]
        elif _WIRE_KIND[slot] == WIRE_FLAG:
            if order.number[slot] != 0:
                memcpy(out, b"4:true,", 7)
                out += 7
            else:
                memcpy(out, b"5:false,", 8)
                out += 8
        else:
            length = order.text_len[slot]
            if length == 0:
                memcpy(out, b"0:,", 3)
                out += 3
            elif _KIND[slot] == KIND_DECIMAL:
                length = _canonical_decimal(<const char*>order.text[slot], length, decimal)
                if length < 0:
                    return -1
                out = _put_netstring(out, decimal, length)
            else:
                out = _put_netstring(out, <const char*>order.text[slot], length)
    buf.length = out - buf.data
    return buf.length


cdef VerifyResult _verify_request(KeyRing keyring, const unsigned char* p, Py_ssize_t n, double now_f,
                                  long long ttl, long long skew, Buffer* buf):
    cdef WireOrder order
    # Absent fields: no text (the pointers are read only under a non-zero length), 0.
    memset(order.text_len, 0, sizeof(order.text_len))
    memset(order.number, 0, sizeof(order.number))
    order.token_len = 0
    if not _read_request(p, n, &order) or _wire_body(&order, buf) < 0:
        return _result(_REQUEST_INVALID, None, None, None)
    if order.token_len == 0:
        return _result(_MISSING, None, None, None)
    # A token with a non-ASCII byte is TOKEN_MALFORMED: _parse_token accepts ASCII only.
    return _verify(keyring, <const char*>order.token, order.token_len, buf.data, buf.length, now_f, ttl, skew)


def verify_order_request(KeyRing keyring not None, bytes data not None, now, ttl_seconds=300, skew_seconds=5):
    """:func:`verify_token` from a serialized ``SubmitOrderRequest`` or
    ``ExecuteOrderRequest`` (the order in field 1, the token in field 2), as it came
    off the wire: the canonical body is built from the order's bound fields (enums by
    name, decimals normalised) without parsing the message into objects.

    Returns the same verdicts as :func:`verify_token`, or ``REQUEST_INVALID`` when the
    bytes are not a well-formed message or the order has no canonical encoding
    (then validate it field by field to say what is wrong).

    Raises
    ------
    TypeError, ValueError
        Only for caller errors, as :func:`verify_token`.
    """
    cdef double now_f
    cdef long long ttl = 0, skew = 0
    cdef char stack[1024]
    cdef Buffer buf
    _window(now, ttl_seconds, skew_seconds, &now_f, &ttl, &skew)
    buf.data = stack
    buf.length = 0
    buf.capacity = sizeof(stack)
    buf.owned = False
    try:
        return _verify_request(keyring, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                               now_f, ttl, skew, &buf)
    finally:
        if buf.owned:
            PyMem_Free(buf.data)


def verify_order_requests(KeyRing keyring not None, bytes data not None, now, ttl_seconds=300, skew_seconds=5):
    """:func:`verify_order_request` for each request of a serialized batch
    (``SubmitOrdersRequest``, ``ExecuteOrdersRequest``: the requests in field 1), in order.

    Raises
    ------
    ValueError
        The batch itself is not a well-formed message (or a caller error, as
        :func:`verify_token`).
    """
    cdef double now_f
    cdef long long ttl = 0, skew = 0
    cdef char stack[1024]
    cdef Buffer buf
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i = 0, start = 0, end
    cdef unsigned long long number = 0, value = 0
    cdef int wire = 0
    cdef list results = []
    _window(now, ttl_seconds, skew_seconds, &now_f, &ttl, &skew)
    # The whole batch is checked first: a malformed one verifies nothing.
    while i < n:
        i = _next_field(p, n, i, &number, &wire, &value, &start)
        if i < 0:
            raise ValueError(BATCH_ERROR)
    buf.data = stack
    buf.length = 0
    buf.capacity = sizeof(stack)
    buf.owned = False
    try:
        i = 0
        while i < n:
            end = _next_field(p, n, i, &number, &wire, &value, &start)
            if number == 1 and wire == 2:
                results.append(_verify_request(keyring, p + start, end - start, now_f, ttl, skew, &buf))
            i = end
        return results
    finally:
        if buf.owned:
            PyMem_Free(buf.data)


def mac_and_digest(KeyRing keyring not None, bytes data not None, bytes body not None):
    """HMAC-SHA256 of ``data`` with the current key and SHA-256 of ``body``, as a
    verification computes them (see :func:`sha_ni`): two 32-byte strings. For tests
    against :mod:`hmac` / :mod:`hashlib` (not part of the token API)."""
    cdef unsigned char mac[HASH_LEN]
    cdef unsigned char digest[HASH_LEN]
    cdef _HmacKey key = <_HmacKey>keyring._keys[0]
    key.mac_and_digest(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), PyBytes_AS_STRING(body),
                       <size_t>PyBytes_GET_SIZE(body), mac, digest)
    return PyBytes_FromStringAndSize(<char*>mac, HASH_LEN), PyBytes_FromStringAndSize(<char*>digest, HASH_LEN)


def hmac_floor(KeyRing keyring not None, bytes data not None):
    """HMAC-SHA256 of ``data`` with the current key's keyed OpenSSL context, and nothing
    else: the MAC a verification computes, without the parsing, the body digest or the
    result. The micro-benchmarks' floor (not part of the token API); returns 32 bytes."""
    cdef unsigned char raw[HASH_LEN]
    cdef _HmacKey key = <_HmacKey>keyring._keys[0]
    key.mac(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data), raw)
    return PyBytes_FromStringAndSize(<char*>raw, HASH_LEN)
