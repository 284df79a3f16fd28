#ifndef VOX_COPENSSL_SHIM_H
#define VOX_COPENSSL_SHIM_H
// SHA1_Init/Update/Final with a precomputed inner/outer SHA_CTX is the cheapest
// HMAC-SHA1 here (FINDINGS: 263 ns vs 500 ns for HMAC_Init_ex reuse); OpenSSL 3
// marks it deprecated, so import it without the warning.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

// EVP_CTRL_GCM_* are plain constants, but keep the tag calls in one place with the
// types Swift expects (the ctrl function takes a void * it never writes for SET_TAG).
static inline int vox_evp_gcm_set_tag(EVP_CIPHER_CTX *ctx, const void *tag, int len) {
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, len, (void *)tag);
}
static inline int vox_evp_gcm_get_tag(EVP_CIPHER_CTX *ctx, void *tag, int len) {
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, len, tag);
}
// SSL_CTX_set_mode is a macro.
static inline long vox_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

// DTLS-SRTP (VoxMedia's DTLSServer). Each of these is a macro over SSL_ctrl/BIO_ctrl or a
// variadic call, which Swift cannot import.
// SSL_CTX_set_min/max_proto_version are macros: pin DTLS 1.2, the version OpenSSL 3.0 has.
static inline int vox_ssl_ctx_set_dtls12_only(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION) == 1
        && SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION) == 1;
}
// SSL_OP_* are built with the SSL_OP_BIT macro (a cast Swift does not import): no MTU
// queries on memory BIOs, no session tickets or cache (every handshake is a new client).
static inline uint64_t vox_ssl_ctx_set_dtls_options(SSL_CTX *ctx) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
}
// SSL_set_mtu is a macro: the largest datagram OpenSSL writes (with SSL_OP_NO_QUERY_MTU).
static inline long vox_ssl_set_mtu(SSL *ssl, long mtu) {
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    return SSL_set_mtu(ssl, mtu);
}
// BIO_set_mem_eof_return is a macro: an empty memory BIO then reads as "retry", not EOF.
static inline long vox_bio_set_mem_eof_return(BIO *bio, int value) {
    return BIO_set_mem_eof_return(bio, value);
}
// EVP_EC_gen is a macro over the variadic EVP_PKEY_Q_keygen.
static inline EVP_PKEY *vox_ec_p256_generate(void) {
    return EVP_EC_gen("P-256");
}
// DTLSv1_get_timeout and DTLSv1_handle_timeout are macros (the test client drives them).
static inline long vox_dtls_get_timeout(SSL *ssl, struct timeval *tv) {
    return DTLSv1_get_timeout(ssl, tv);
}
static inline long vox_dtls_handle_timeout(SSL *ssl) {
    return DTLSv1_handle_timeout(ssl);
}
#endif
