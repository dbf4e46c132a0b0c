#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H

// OpenSSL 3 (Debian's libssl-dev) for Reactor's TLS: TLSContext.swift and TLSSession.swift are its only users.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

// Function-like macros and macro-built constants Swift cannot import, each as a static inline wrapper.

static inline int copenssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline long copenssl_ctx_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline void copenssl_ctx_set_read_ahead(SSL_CTX *ctx, int yes) {
    SSL_CTX_set_read_ahead(ctx, yes);
}

static inline int copenssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

typedef int (*copenssl_servername_callback)(SSL *ssl, int *alert, void *arg);

static inline void copenssl_ctx_set_servername_callback(SSL_CTX *ctx, copenssl_servername_callback cb, void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

static inline int copenssl_ctx_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_groups_list(ctx, list);
}

/// The options every context gets: no renegotiation, no compression, the server's cipher order, and a
/// peer's TCP close without close_notify read as the end of input (as Python's suppress_ragged_eofs does;
/// without the option OpenSSL 3 makes it a fatal error, and the connection could not answer any more).
static inline uint64_t copenssl_default_options(void) {
    return SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF;
}

/// Whether the socket under `ssl` has reached its end (the socket BIO saw read() return 0): with
/// SSL_OP_IGNORE_UNEXPECTED_EOF, what tells a bare TCP close from a close_notify.
static inline int copenssl_read_side_at_eof(SSL *ssl) {
    return (int)BIO_eof(SSL_get_rbio(ssl));
}

/// Whether the error at the head of the queue is a plain HTTP request (or proxy CONNECT) where a TLS
/// ClientHello was expected: OpenSSL recognizes "GET ", "POST ", "HEAD ", "PUT " and "CONNECT" and sends no alert.
static inline int copenssl_peek_http_request(void) {
    unsigned long code = ERR_peek_error();
    return ERR_GET_LIB(code) == ERR_LIB_SSL
        && (ERR_GET_REASON(code) == SSL_R_HTTP_REQUEST || ERR_GET_REASON(code) == SSL_R_HTTPS_PROXY_REQUEST);
}

/// The errno of a system-library error at the head of the queue, or 0 for any other error.
static inline int copenssl_peek_system_error(void) {
    unsigned long code = ERR_peek_error();
    return ERR_GET_LIB(code) == ERR_LIB_SYS ? ERR_GET_REASON(code) : 0;
}

/// Partial writes (a record at a time), a write buffer that may move between retries, and buffers
/// released while a connection is idle.
static inline long copenssl_default_modes(void) {
    return SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS;
}

static inline const char *copenssl_current_cipher_name(const SSL *ssl) {
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    return cipher ? SSL_CIPHER_get_name(cipher) : NULL;
}

static inline int copenssl_print_name_rfc2253(BIO *bio, const X509_NAME *name) {
    return X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
}

#endif
