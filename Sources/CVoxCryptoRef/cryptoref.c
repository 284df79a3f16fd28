// A plain C SRTP loop on libcrypto: the baseline for our Swift SRTP. Written the way
// ../shared/afxdp-ref/srtp_fast.h found fastest on this machine.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "CVoxCryptoRef.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

struct flow {
    EVP_CIPHER_CTX *enc, *dec;  // ECB (AES-CM) or GCM encrypt / decrypt
    SHA_CTX ih, oh;
    uint8_t salt[14];
};

struct vox_cref {
    int profile, flows, tag, gcm;
    struct flow *f;
};

static void kdf(EVP_CIPHER_CTX *prf, const uint8_t *salt, int salt_len, uint8_t label, uint8_t *out, int n) {
    uint8_t x[16] = {0}, blk[16];
    memcpy(x, salt, salt_len);
    x[7] ^= label;
    for (int off = 0, ctr = 0; off < n; off += 16, ctr++) {
        int l;
        x[14] = (uint8_t)(ctr >> 8);
        x[15] = (uint8_t)ctr;
        EVP_EncryptUpdate(prf, blk, &l, x, 16);
        memcpy(out + off, blk, n - off < 16 ? n - off : 16);
    }
}

vox_cref *vox_cref_create(int profile, int flows, const uint8_t *mkeys, const uint8_t *msalts) {
    int klen, slen, tag, gcm;
    switch (profile) {
    case 1: klen = 16; slen = 14; tag = 10; gcm = 0; break;
    case 2: klen = 16; slen = 14; tag = 4; gcm = 0; break;
    case 7: klen = 16; slen = 12; tag = 16; gcm = 1; break;
    case 8: klen = 32; slen = 12; tag = 16; gcm = 1; break;
    default: return NULL;
    }
    vox_cref *r = calloc(1, sizeof(*r));
    r->profile = profile; r->flows = flows; r->tag = tag; r->gcm = gcm;
    r->f = calloc((size_t)flows, sizeof(struct flow));
    for (int i = 0; i < flows; i++) {
        struct flow *f = &r->f[i];
        EVP_CIPHER_CTX *prf = EVP_CIPHER_CTX_new();
        EVP_EncryptInit_ex(prf, klen == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb(), NULL, mkeys + i * klen, NULL);
        EVP_CIPHER_CTX_set_padding(prf, 0);
        uint8_t k[32], a[20], pad[64];
        kdf(prf, msalts + i * slen, slen, 0, k, klen);
        kdf(prf, msalts + i * slen, slen, 2, f->salt, slen);
        kdf(prf, msalts + i * slen, slen, 1, a, 20);
        EVP_CIPHER_CTX_free(prf);
        f->enc = EVP_CIPHER_CTX_new();
        if (gcm) {
            const EVP_CIPHER *c = klen == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
            f->dec = EVP_CIPHER_CTX_new();
            EVP_EncryptInit_ex(f->enc, c, NULL, k, NULL);
            EVP_DecryptInit_ex(f->dec, c, NULL, k, NULL);
        } else {
            EVP_EncryptInit_ex(f->enc, EVP_aes_128_ecb(), NULL, k, NULL);
            EVP_CIPHER_CTX_set_padding(f->enc, 0);
            memset(pad, 0x36, 64);
            for (int j = 0; j < 20; j++) pad[j] ^= a[j];
            SHA1_Init(&f->ih); SHA1_Update(&f->ih, pad, 64);
            memset(pad, 0x5c, 64);
            for (int j = 0; j < 20; j++) pad[j] ^= a[j];
            SHA1_Init(&f->oh); SHA1_Update(&f->oh, pad, 64);
        }
        OPENSSL_cleanse(k, sizeof k); OPENSSL_cleanse(a, sizeof a); OPENSSL_cleanse(pad, sizeof pad);
    }
    return r;
}

void vox_cref_free(vox_cref *r) {
    if (!r) return;
    for (int i = 0; i < r->flows; i++) {
        EVP_CIPHER_CTX_free(r->f[i].enc);
        if (r->f[i].dec) EVP_CIPHER_CTX_free(r->f[i].dec);
    }
    OPENSSL_cleanse(r->f, sizeof(struct flow) * (size_t)r->flows);
    free(r->f);
    free(r);
}

static inline int header_len(const uint8_t *p, int limit) {
    int h = 12 + 4 * (p[0] & 0x0f);
    if (p[0] & 0x10) {
        if (h + 4 > limit) return -1;
        h += 4 + 4 * ((p[h + 2] << 8) | p[h + 3]);
    }
    return h <= limit ? h : -1;
}

static inline void hmac(const struct flow *f, const uint8_t *m, int n, uint8_t out[20]) {
    static const uint8_t roc[4] = {0, 0, 0, 0};
    SHA_CTX c = f->ih;
    SHA1_Update(&c, m, (size_t)n); SHA1_Update(&c, roc, 4); SHA1_Final(out, &c);
    c = f->oh;
    SHA1_Update(&c, out, 20); SHA1_Final(out, &c);
}

static inline void cm_crypt(const struct flow *f, uint8_t *p, int n, uint32_t ssrc, uint16_t seq) {
    uint8_t iv[16], blk[512];
    memcpy(iv, f->salt, 14);
    iv[14] = iv[15] = 0;
    iv[4] ^= ssrc >> 24; iv[5] ^= ssrc >> 16; iv[6] ^= ssrc >> 8; iv[7] ^= ssrc;
    iv[12] ^= seq >> 8; iv[13] ^= seq;
    for (int done = 0, ctr = 0; done < n; done += 512) {
        int chunk = n - done < 512 ? n - done : 512, nb = (chunk + 15) / 16, l;
        for (int b = 0; b < nb; b++, ctr++) {
            memcpy(blk + 16 * b, iv, 14);
            blk[16 * b + 14] = (uint8_t)(ctr >> 8);
            blk[16 * b + 15] = (uint8_t)ctr;
        }
        EVP_EncryptUpdate(f->enc, blk, &l, blk, nb * 16);
        for (int i = 0; i < chunk; i++) p[done + i] ^= blk[i];
    }
}

static inline void gcm_iv(const struct flow *f, uint32_t ssrc, uint16_t seq, uint8_t iv[12]) {
    memcpy(iv, f->salt, 12);
    iv[2] ^= ssrc >> 24; iv[3] ^= ssrc >> 16; iv[4] ^= ssrc >> 8; iv[5] ^= ssrc;
    iv[10] ^= seq >> 8; iv[11] ^= seq;
}

long vox_cref_unprotect_batch(vox_cref *r, const uint8_t *const *packets, const int *lengths, const int *flow_of,
                              long count, uint8_t *w) {
    long ok = 0;
    for (long i = 0; i < count; i++) {
        int len = lengths[i];
        memcpy(w, packets[i], (size_t)len);
        const struct flow *f = &r->f[flow_of[i]];
        int alen = len - r->tag, h = header_len(w, alen), l;
        if (alen < 12 || h < 0) continue;
        uint32_t ssrc = (uint32_t)w[8] << 24 | (uint32_t)w[9] << 16 | (uint32_t)w[10] << 8 | w[11];
        uint16_t seq = (uint16_t)(w[2] << 8 | w[3]);
        if (r->gcm) {
            uint8_t iv[12], sink[16];
            gcm_iv(f, ssrc, seq, iv);
            EVP_DecryptInit_ex(f->dec, NULL, NULL, NULL, iv);
            EVP_DecryptUpdate(f->dec, NULL, &l, w, h);
            EVP_DecryptUpdate(f->dec, w + h, &l, w + h, alen - h);
            EVP_CIPHER_CTX_ctrl(f->dec, EVP_CTRL_GCM_SET_TAG, 16, w + alen);
            if (EVP_DecryptFinal_ex(f->dec, sink, &l) > 0) ok++;
        } else {
            uint8_t tag[20];
            hmac(f, w, alen, tag);
            if (CRYPTO_memcmp(tag, w + alen, (size_t)r->tag) != 0) continue;
            cm_crypt(f, w + h, alen - h, ssrc, seq);
            ok++;
        }
    }
    return ok;
}

long vox_cref_protect_batch(vox_cref *r, const uint8_t *const *packets, const int *lengths, const int *flow_of,
                            long count, uint8_t *w) {
    long ok = 0;
    for (long i = 0; i < count; i++) {
        int len = lengths[i], l;
        memcpy(w, packets[i], (size_t)len);
        const struct flow *f = &r->f[flow_of[i]];
        int h = header_len(w, len);
        if (h < 0) continue;
        uint32_t ssrc = (uint32_t)w[8] << 24 | (uint32_t)w[9] << 16 | (uint32_t)w[10] << 8 | w[11];
        uint16_t seq = (uint16_t)(w[2] << 8 | w[3]);
        if (r->gcm) {
            uint8_t iv[12], sink[16];
            gcm_iv(f, ssrc, seq, iv);
            EVP_EncryptInit_ex(f->enc, NULL, NULL, NULL, iv);
            EVP_EncryptUpdate(f->enc, NULL, &l, w, h);
            EVP_EncryptUpdate(f->enc, w + h, &l, w + h, len - h);
            EVP_EncryptFinal_ex(f->enc, sink, &l);
            if (EVP_CIPHER_CTX_ctrl(f->enc, EVP_CTRL_GCM_GET_TAG, 16, w + len) == 1) ok++;
        } else {
            uint8_t tag[20];
            cm_crypt(f, w + h, len - h, ssrc, seq);
            hmac(f, w, len, tag);
            memcpy(w + len, tag, (size_t)r->tag);
            ok++;
        }
    }
    return ok;
}
