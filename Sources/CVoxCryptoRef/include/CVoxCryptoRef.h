#ifndef VOX_CRYPTO_REF_H
#define VOX_CRYPTO_REF_H
#include <stdint.h>

/// The plain C loop `voxedge bench micro` measures our Swift SRTP against: the same
/// libcrypto calls (AES-ECB over own counter blocks + precomputed SHA-1 HMAC states for
/// AES-CM; one EVP GCM context per flow with only the IV reset), nothing around them:
/// no replay window, no ROC tracking (ROC 0), no stream lookup.
typedef struct vox_cref vox_cref;

/// `profile` is the DTLS-SRTP id (1, 2, 7, 8); keys and salts are `flows` master keys
/// and salts back to back. Returns NULL on a bad profile or a libcrypto failure.
vox_cref *vox_cref_create(int profile, int flows, const uint8_t *master_keys, const uint8_t *master_salts);
void vox_cref_free(vox_cref *ref);

/// For each i < count: copies packets[i] (lengths[i] bytes) to `work`, then unprotects
/// (or protects, into `work`, which must have room for the tag) it as an RTP packet of
/// flow flow_of[i]. Returns how many succeeded.
long vox_cref_unprotect_batch(vox_cref *ref, const uint8_t *const *packets, const int *lengths,
                              const int *flow_of, long count, uint8_t *work);
long vox_cref_protect_batch(vox_cref *ref, const uint8_t *const *packets, const int *lengths,
                            const int *flow_of, long count, uint8_t *work);
#endif
