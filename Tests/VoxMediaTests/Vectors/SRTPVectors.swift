// Test vectors transcribed from RFC 3711 Appendix B and RFC 7714 Section 16.
//
// RFC 7714 numbering: the SRTP (RTP) AES-GCM vectors are Section 16 ("Some RTP Test
// Vectors") and the SRTCP vectors are Section 17 ("RTCP Test Vectors"); both are here.
// RFC 7714 publishes NO key-derivation vector for the AEAD profiles: its vectors start from
// the session key and session salt directly (the 12-octet salt is "Quid pro quo").
//
// Every hex string is lowercase with the RFC's spaces and line wraps removed. Each comment
// names the RFC section and quotes the label the RFC prints for the value. Values marked
// DERIVED are not printed verbatim by the RFC (e.g. a prefix of a printed value); they are
// there for convenience and say how they were obtained.
//
// All values were cross-checked offline (Python `cryptography`, AES-ECB/AES-GCM + a GHASH
// re-implementation): every keystream block, derived key, H, K0, GHASH partial hash, tag,
// ciphertext and protected packet below is reproduced from the inputs below.
enum SRTPVectors {

    // ============================================================================
    // RFC 3711 Appendix B.2 — AES-CM Test Vectors
    // ============================================================================

    // RFC 3711 B.2 "Keystream segment length: 1044512 octets (65282 AES blocks)"
    static let aesCMKeystreamSegmentLength: Int = 1044512

    // RFC 3711 B.2 "Keystream segment length: ... (65282 AES blocks)"
    static let aesCMKeystreamSegmentBlocks: Int = 65282

    // RFC 3711 B.2 "Session Key:"
    static let aesCMKey = "2b7e151628aed2a6abf7158809cf4f3c"

    // RFC 3711 B.2 "Rollover Counter:"
    static let aesCMRolloverCounter = "00000000"

    // RFC 3711 B.2 "Sequence Number:"
    static let aesCMSequenceNumber = "0000"

    // RFC 3711 B.2 "SSRC:"
    static let aesCMSSRC = "00000000"

    // RFC 3711 B.2 "Session Salt: F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000 (already shifted)"
    // NOTE: 16 octets as printed, i.e. the 112-bit session salt already multiplied by 2^16.
    static let aesCMSessionSalt = "f0f1f2f3f4f5f6f7f8f9fafbfcfd0000"

    // DERIVED (not printed by the RFC): the 14-octet (112-bit) session salt k_s,
    // i.e. aesCMSessionSalt with the two trailing zero octets of the 2^16 shift removed.
    static let aesCMSessionSalt112 = "f0f1f2f3f4f5f6f7f8f9fafbfcfd"

    // RFC 3711 B.2 "Offset:" (the initial counter block / IV for packet index 0, SSRC 0)
    static let aesCMOffset = "f0f1f2f3f4f5f6f7f8f9fafbfcfd0000"

    // RFC 3711 B.2 table, column "Counter". block = counter - Offset (the RFC elides the
    // blocks between 0x0002 and 0xFEFF with "...").
    static let aesCMCounters: [(block: Int, counter: String)] = [
        (block: 0x0000, counter: "f0f1f2f3f4f5f6f7f8f9fafbfcfd0000"),
        (block: 0x0001, counter: "f0f1f2f3f4f5f6f7f8f9fafbfcfd0001"),
        (block: 0x0002, counter: "f0f1f2f3f4f5f6f7f8f9fafbfcfd0002"),
        (block: 0xFEFF, counter: "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"),
        (block: 0xFF00, counter: "f0f1f2f3f4f5f6f7f8f9fafbfcfdff00"),
        (block: 0xFF01, counter: "f0f1f2f3f4f5f6f7f8f9fafbfcfdff01"),
    ]

    // RFC 3711 B.2 table, column "Keystream" (keystream block for each "Counter" above;
    // block index counted from the start of the keystream segment).
    static let aesCMKeystream: [(block: Int, keystream: String)] = [
        (block: 0x0000, keystream: "e03ead0935c95e80e166b16dd92b4eb4"),
        (block: 0x0001, keystream: "d23513162b02d0f72a43a2fe4a5f97ab"),
        (block: 0x0002, keystream: "41e95b3bb0a2e8dd477901e4fca894c0"),
        (block: 0xFEFF, keystream: "ec8cdf7398607cb0f2d21675ea9ea1e4"),
        (block: 0xFF00, keystream: "362b7c3c6773516318a077d7fc5073ae"),
        (block: 0xFF01, keystream: "6a2cc3787889374fbeb4c81b17ba6c44"),
    ]

    // ============================================================================
    // RFC 3711 Appendix B.3 — Key Derivation Test Vectors (AES-128 CM PRF, kdr = 0)
    // ============================================================================

    // ERRATA: the only RFC 3711 erratum found (EID 3712, "Held for Document Update") is about
    // Section 4.3.2 (SRTCP key derivation: the SRTCP index is to be treated as a 48-bit quantity
    // so the label sits in the same octet as for SRTP, which is what libsrtp does). It changes no
    // value in B.2 or B.3; there is no SRTCP KDF vector in RFC 3711.

    // RFC 3711 B.3 "master key:"
    static let kdfMasterKey = "e1f97a0d3e018be0d64fa32c06de4139"

    // RFC 3711 B.3 "master salt:"
    static let kdfMasterSalt = "0ec675ad498afeebb6960b3aabe6"

    // RFC 3711 B.3 "index DIV kdr:" (six-octet string of zeros)
    static let kdfIndexDivKdr = "000000000000"

    // RFC 3711 B.3 cipher key "label:"
    static let kdfCipherKeyLabel: UInt8 = 0x00

    // RFC 3711 B.3 cipher key "xor: ... (x, PRF input)"
    static let kdfCipherKeyPRFInput = "0ec675ad498afeebb6960b3aabe6"

    // RFC 3711 B.3 cipher key "x*2^16: ... (AES-CM input)"
    static let kdfCipherKeyAESInput = "0ec675ad498afeebb6960b3aabe60000"

    // RFC 3711 B.3 "cipher key: ... (AES-CM output)" (label 0x00, 16 octets)
    static let kdfCipherKey = "c61e7a93744f39ee10734afe3ff7a087"

    // RFC 3711 B.3 cipher salt "label:"
    static let kdfCipherSaltLabel: UInt8 = 0x02

    // RFC 3711 B.3 cipher salt "xor: ... (x, PRF input)"
    static let kdfCipherSaltPRFInput = "0ec675ad498afee9b6960b3aabe6"

    // RFC 3711 B.3 cipher salt "x*2^16: ... (AES-CM input)"
    static let kdfCipherSaltAESInput = "0ec675ad498afee9b6960b3aabe60000"

    // RFC 3711 B.3 cipher salt "(AES-CM ouptut)" [sic, RFC typo for "output"] — full 16-octet block
    static let kdfCipherSaltAESOutput = "30cbbc08863d8c85d49db34a9ae17ac6"

    // RFC 3711 B.3 "cipher salt:" (label 0x02, 14 octets = first 14 octets of the AES-CM output)
    static let kdfCipherSalt = "30cbbc08863d8c85d49db34a9ae1"

    // RFC 3711 B.3 auth key "label:"
    static let kdfAuthKeyLabel: UInt8 = 0x01

    // RFC 3711 B.3 auth key "xor: ... (x, PRF input)"
    static let kdfAuthKeyPRFInput = "0ec675ad498afeeab6960b3aabe6"

    // RFC 3711 B.3 auth key "x*2^16: ... (AES-CM input)"
    static let kdfAuthKeyAESInput = "0ec675ad498afeeab6960b3aabe60000"

    // RFC 3711 B.3 table "auth key" (left column) / "AES input blocks" (right column).
    // The last row is only 14 octets: the RFC derives a 94-octet auth key.
    static let kdfAuthKeyBlocks: [(authKey: String, aesInput: String)] = [
        (authKey: "cebe321f6ff7716b6fd4ab49af256a15", aesInput: "0ec675ad498afeeab6960b3aabe60000"),
        (authKey: "6d38baa48f0a0acf3c34e2359e6cdbce", aesInput: "0ec675ad498afeeab6960b3aabe60001"),
        (authKey: "e049646c43d9327ad175578ef7227098", aesInput: "0ec675ad498afeeab6960b3aabe60002"),
        (authKey: "6371c10c9a369ac2f94a8c5fbcdddc25", aesInput: "0ec675ad498afeeab6960b3aabe60003"),
        (authKey: "6d6e919a48b610ef17c2041e47403576", aesInput: "0ec675ad498afeeab6960b3aabe60004"),
        (authKey: "6b68642c59bbfc2f34db60dbdfb2", aesInput: "0ec675ad498afeeab6960b3aabe60005"),
    ]

    // RFC 3711 B.3 "auth key" (label 0x01): all six rows of the table joined, the full
    // 94 octets the RFC gives ("an authentication function which requires a 94-octet session
    // authentication key").
    static let kdfAuthKey = "cebe321f6ff7716b6fd4ab49af256a156d38baa48f0a0acf3c34e2359e6cdbcee049646c43d9327ad175578ef72270986371c10c9a369ac2f94a8c5fbcdddc256d6e919a48b610ef17c2041e474035766b68642c59bbfc2f34db60dbdfb2"

    // DERIVED (not printed separately by the RFC): first 20 octets of kdfAuthKey,
    // the n_a = 160-bit auth key used by HMAC-SHA1 (AES_CM_128_HMAC_SHA1_80/_32).
    static let kdfAuthKeyHMACSHA1 = "cebe321f6ff7716b6fd4ab49af256a156d38baa4"

    // ============================================================================
    // RFC 7714 Section 16 — Some RTP Test Vectors (common inputs)
    // ============================================================================

    // RFC 7714 Section 16 "The examples in this section are all based upon the same RTP packet"
    // (also 16.1.1 / 16.2.1 "Encrypting the following packet:", 16.1.3 / 16.2.3 "Tagging the following packet:")
    static let gcmRTPPacket = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // RFC 7714 Section 16 "a 12-octet header (8040f17b 8041f8d3 5501a0b2)"
    static let gcmRTPHeader = "8040f17b8041f8d35501a0b2"

    // RFC 7714 Section 16 "a 38-octet payload (...)" — ASCII "Gallia est omnis divisa in partes tres"
    static let gcmRTPPayload = "47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // RFC 7714 Section 16 "The salt used (51756964 2070726f 2071756f) comes from the ASCII string
    // "Quid pro quo"" (every 16.x / 17.x vector: "salt:"). This is the 96-bit SESSION salt.
    static let gcmSalt = "517569642070726f2071756f"

    // RFC 7714 Section 16 "The 16-octet (128-bit) key is 00 01 02 ... 0f" (16.1.x / 17.1 / 17.3 "Key:").
    // This is the SESSION (encryption) key.
    static let gcm128Key = "000102030405060708090a0b0c0d0e0f"

    // RFC 7714 Section 16 "the 32-octet (256-bit) key is 00 01 02 ... 1f" (16.2.x / 17.2 / 17.4 "Key:").
    // This is the SESSION (encryption) key.
    static let gcm256Key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    // RFC 7714 Section 16 IV table, column "SSRC" (00 00 | 55 01 a0 b2 | ...)
    static let gcmRTPSSRC: UInt32 = 0x5501_a0b2

    // RFC 7714 Section 16 IV table, column "ROC"
    static let gcmRTPROC: UInt32 = 0

    // RFC 7714 Section 16 IV table, column "SEQ"
    static let gcmRTPSequenceNumber: UInt16 = 0xf17b

    // RFC 7714 Section 16 / "Form the IV" row "| Pad |   SSRC    |    ROC    | SEQ |"
    static let gcmRTPIVInput = "00005501a0b200000000f17b"

    // RFC 7714 Section 16 "IV" (= IV input XOR salt); "All of the RTP examples use this IV."
    static let gcmRTPIV = "51753c6580c2726f20718414"

    // ============================================================================
    // RFC 7714 Section 16.1.1 — SRTP AEAD_AES_128_GCM Encryption
    // ============================================================================

    // RFC 7714 16.1.1 "Key:"
    static let gcm128RTPKey = "000102030405060708090a0b0c0d0e0f"

    // RFC 7714 16.1.1 "IV:"
    static let gcm128RTPIV = "51753c6580c2726f20718414"

    // RFC 7714 16.1.1 "AAD:"
    static let gcm128RTPAAD = "8040f17b8041f8d35501a0b2"

    // RFC 7714 16.1.1 "PT:"
    static let gcm128RTPPlaintext = "47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // RFC 7714 16.1.1 "H:" (GHASH key = AES_K(0^128))
    static let gcm128RTPH = "c6a13b37878f5b826f4f8162a1c8d879"

    // RFC 7714 16.1.1 "Encrypt the Plaintext": "block # n" with "IV||blk_cntr:",
    // "key_block:", "plain_block:", "cipher_block:" (last block is partial).
    static let gcm128RTPKeystreamBlocks: [(block: Int, counterBlock: String, keyBlock: String, plainBlock: String, cipherBlock: String)] = [
        (block: 0, counterBlock: "51753c6580c2726f2071841400000002", keyBlock: "b52c8fcf9255fe09dfcea673f01022b9",
         plainBlock: "47616c6c696120657374206f6d6e6973", cipherBlock: "f24de3a3fb34de6cacba861c9d7e4bca"),
        (block: 1, counterBlock: "51753c6580c2726f2071841400000003", keyBlock: "9e0752a3645a2f4f2bcbd40a30b5a5fe",
         plainBlock: "2064697669736120696e207061727465", cipherBlock: "be633bd50d294e6f42a5f47a51c7d19b"),
        (block: 2, counterBlock: "51753c6580c2726f2071841400000004", keyBlock: "45fe4eaded400a5d1af363f90ce1493b",
         plainBlock: "732074726573", cipherBlock: "36de3adf8833"),
    ]

    // RFC 7714 16.1.1 "Cipher before tag appended"
    static let gcm128RTPCipher = "f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833"

    // RFC 7714 16.1.1 "Compute the GMAC tag": "AAD word:" / "cipher word:" / "length word:"
    // each followed by its "partial hash:"
    static let gcm128RTPGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "8040f17b8041f8d35501a0b200000000", partialHash: "bcfb3d1d0e6e3e78ba45403377dba11b"),  // AAD word
        (word: "f24de3a3fb34de6cacba861c9d7e4bca", partialHash: "0ebc0abe1b15b32fedd2b07888c1ef61"),  // cipher word
        (word: "be633bd50d294e6f42a5f47a51c7d19b", partialHash: "438e5797011ea860585709a2899f4685"),  // cipher word
        (word: "36de3adf883300000000000000000000", partialHash: "336fb643310d7bac2aeaa76247f6036d"),  // cipher word
        (word: "00000000000000600000000000000130", partialHash: "1b964067078c408c4e442a8f015e5264"),  // length word
    ]

    // RFC 7714 16.1.1 "Turn GHASH into GMAC" "GHASH:"
    static let gcm128RTPGHASH = "1b964067078c408c4e442a8f015e5264"

    // RFC 7714 16.1.1 "K0:" (= AES_K(IV || 00000001))
    static let gcm128RTPK0 = "920b3f40b93d2a1d1c8b5cd1e5675eaa"

    // RFC 7714 16.1.1 "full GMAC:" (the 16-octet authentication tag)
    static let gcm128RTPTag = "899d7f27beb16a9152cf765ee4390cce"

    // RFC 7714 16.1.1 "Cipher with tag"
    static let gcm128RTPCipherWithTag = "f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce"

    // RFC 7714 16.1.1 "Encrypted and tagged packet:" (full SRTP packet = header || cipher || tag)
    static let gcm128RTPEncryptedPacket = "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce"

    // ---- RFC 7714 16.1.2 SRTP AEAD_AES_128_GCM Decryption ----

    // RFC 7714 16.1.2 "Decrypting the following packet:" (identical to gcm128RTPEncryptedPacket)
    static let gcm128RTPDecryptInput = "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce"

    // RFC 7714 16.1.2 "CT:" (ciphertext || tag; AAD/IV/Key/H as in 16.1.1)
    static let gcm128RTPDecryptCT = "f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce"

    // RFC 7714 16.1.2 "Received tag =" / "Computed tag ="
    static let gcm128RTPDecryptReceivedTag = "899d7f27beb16a9152cf765ee4390cce"

    // RFC 7714 16.1.2 "Verified and tagged packet:" — NOTE: the RFC prints only the recovered
    // 38-octet PAYLOAD under this label (the 12-octet header is unchanged and not repeated).
    static let gcm128RTPDecryptOutput = "47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // ---- RFC 7714 16.1.3 SRTP AEAD_AES_128_GCM Authentication Tagging (no encryption) ----

    // RFC 7714 16.1.3 "AAD:" (the whole RTP packet; plaintext is empty; IV/Key/H as in 16.1.1)
    static let gcm128RTPAuthOnlyAAD = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // RFC 7714 16.1.3 "Process the AAD" / "Process the length word": "AAD word:" /
    // "length word:" each followed by its "partial hash:"
    static let gcm128RTPAuthOnlyGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "8040f17b8041f8d35501a0b247616c6c", partialHash: "79f41fea34a474a77609d8925e9f2b22"),  // AAD word
        (word: "696120657374206f6d6e697320646976", partialHash: "84093a2f85abf17ab37d3ce2f706138f"),  // AAD word
        (word: "69736120696e20706172746573207472", partialHash: "ab2760fee24e6dec754739d8059cd144"),  // AAD word
        (word: "65730000000000000000000000000000", partialHash: "e84f3c55d287fc561c41d09a8aada4be"),  // AAD word
        (word: "00000000000001900000000000000000", partialHash: "b04200c26b81c98af55cc2eafccd1cbc"),  // length word
    ]

    // RFC 7714 16.1.3 "GHASH:" (K0 is the same as gcm128RTPK0)
    static let gcm128RTPAuthOnlyGHASH = "b04200c26b81c98af55cc2eafccd1cbc"

    // RFC 7714 16.1.3 "full GMAC:" / "Cipher with tag" (cipher = tag only)
    static let gcm128RTPAuthOnlyTag = "22493f82d2bce397e9d79e3b19aa4216"

    // RFC 7714 16.1.3 "Tagged packet:" (= packet || tag); also 16.1.4
    // "Verifying the following packet:" (Tag Verification succeeds: "Received tag verified.")
    static let gcm128RTPAuthOnlyPacket = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e20706172746573207472657322493f82d2bce397e9d79e3b19aa4216"

    // ============================================================================
    // RFC 7714 Section 16.2.1 — SRTP AEAD_AES_256_GCM Encryption
    // ============================================================================

    // RFC 7714 16.2.1 "Key:"
    static let gcm256RTPKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    // RFC 7714 16.2.1 "IV:"
    static let gcm256RTPIV = "51753c6580c2726f20718414"

    // RFC 7714 16.2.1 "AAD:"
    static let gcm256RTPAAD = "8040f17b8041f8d35501a0b2"

    // RFC 7714 16.2.1 "PT:"
    static let gcm256RTPPlaintext = "47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // RFC 7714 16.2.1 "H:" (GHASH key = AES_K(0^128))
    static let gcm256RTPH = "f29000b62a499fd0a9f39a6add2e7780"

    // RFC 7714 16.2.1 "Encrypt the Plaintext": "block # n" with "IV||blk_cntr:",
    // "key_block:", "plain_block:", "cipher_block:" (last block is partial).
    static let gcm256RTPKeystreamBlocks: [(block: Int, counterBlock: String, keyBlock: String, plainBlock: String, cipherBlock: String)] = [
        (block: 0, counterBlock: "51753c6580c2726f2071841400000002", keyBlock: "75d0b214c143de779ceb58955e405ad9",
         plainBlock: "47616c6c696120657374206f6d6e6973", cipherBlock: "32b1de78a822fe12ef9f78fa332e33aa"),
        (block: 1, counterBlock: "51753c6580c2726f2071841400000003", keyBlock: "91e47b4ef32b83d3dc650a72178dda6a",
         plainBlock: "2064697669736120696e207061727465", cipherBlock: "b18012389a58e2f3b50b2a0276ffae0f"),
        (block: 2, counterBlock: "51753c6580c2726f2071841400000004", keyBlock: "688643ebdd080798163a16d5e504f63a",
         plainBlock: "732074726573", cipherBlock: "1ba63799b87b"),
    ]

    // RFC 7714 16.2.1 "Cipher before tag appended"
    static let gcm256RTPCipher = "32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b"

    // RFC 7714 16.2.1 "Compute the GMAC tag": "AAD word:" / "cipher word:" / "length word:"
    // each followed by its "partial hash:"
    static let gcm256RTPGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "8040f17b8041f8d35501a0b200000000", partialHash: "0154dcb75485b71880e1957c877351bd"),  // AAD word
        (word: "32b1de78a822fe12ef9f78fa332e33aa", partialHash: "c3f07db9a8b9cb4345eb07f793d322d2"),  // cipher word
        (word: "b18012389a58e2f3b50b2a0276ffae0f", partialHash: "6d1e66fe32eb32ecd8906ceab09db996"),  // cipher word
        (word: "1ba63799b87b00000000000000000000", partialHash: "b3d1d2f1fa3b366619bc42cd2eedafee"),  // cipher word
        (word: "00000000000000600000000000000130", partialHash: "7debf5fa1fac3bd318d5e1a7ee401091"),  // length word
    ]

    // RFC 7714 16.2.1 "Turn GHASH into GMAC" "GHASH:"
    static let gcm256RTPGHASH = "7debf5fa1fac3bd318d5e1a7ee401091"

    // RFC 7714 16.2.1 "K0:" (= AES_K(IV || 00000001))
    static let gcm256RTPK0 = "07482eccc053ed63e16e99df39e77c82"

    // RFC 7714 16.2.1 "full GMAC:" (the 16-octet authentication tag)
    static let gcm256RTPTag = "7aa3db36dfffd6b0f9bb7878d7a76c13"

    // RFC 7714 16.2.1 "Cipher with tag"
    static let gcm256RTPCipherWithTag = "32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13"

    // RFC 7714 16.2.1 "Encrypted and tagged packet:" (full SRTP packet = header || cipher || tag)
    static let gcm256RTPEncryptedPacket = "8040f17b8041f8d35501a0b232b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13"

    // ---- RFC 7714 16.2.2 SRTP AEAD_AES_256_GCM Decryption ----

    // RFC 7714 16.2.2 "Decrypting the following packet:" (identical to gcm256RTPEncryptedPacket)
    static let gcm256RTPDecryptInput = "8040f17b8041f8d35501a0b232b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13"

    // RFC 7714 16.2.2 "CT:" (ciphertext || tag; AAD/IV/Key/H as in 16.2.1)
    static let gcm256RTPDecryptCT = "32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a0276ffae0f1ba63799b87b7aa3db36dfffd6b0f9bb7878d7a76c13"

    // RFC 7714 16.2.2 "Received tag =" / "Computed tag ="
    static let gcm256RTPDecryptReceivedTag = "7aa3db36dfffd6b0f9bb7878d7a76c13"

    // RFC 7714 16.2.2 "Verified and tagged packet:" — NOTE: the RFC prints only the recovered
    // 38-octet PAYLOAD under this label (the 12-octet header is unchanged and not repeated).
    static let gcm256RTPDecryptOutput = "47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // ---- RFC 7714 16.2.3 SRTP AEAD_AES_256_GCM Authentication Tagging (no encryption) ----

    // RFC 7714 16.2.3 "AAD:" (the whole RTP packet; plaintext is empty; IV/Key/H as in 16.2.1)
    static let gcm256RTPAuthOnlyAAD = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573"

    // RFC 7714 16.2.3 "Process the AAD" / "Process the length word": "AAD word:" /
    // "length word:" each followed by its "partial hash:"
    static let gcm256RTPAuthOnlyGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "8040f17b8041f8d35501a0b247616c6c", partialHash: "c059753e6763791762ca630d8ef97714"),  // AAD word
        (word: "696120657374206f6d6e697320646976", partialHash: "a4e3401e712900dc4f1d2303bc4b2675"),  // AAD word
        (word: "69736120696e20706172746573207472", partialHash: "1c8c1af883de0d67878f379a19c65987"),  // AAD word
        (word: "65730000000000000000000000000000", partialHash: "958462781aa8e8feacce6d93b54472ac"),  // AAD word
        (word: "00000000000001900000000000000000", partialHash: "af2efb5dcfdb9900e7127721fdb56956"),  // length word
    ]

    // RFC 7714 16.2.3 "GHASH:" (K0 is the same as gcm256RTPK0)
    static let gcm256RTPAuthOnlyGHASH = "af2efb5dcfdb9900e7127721fdb56956"

    // RFC 7714 16.2.3 "full GMAC:" / "Cipher with tag" (cipher = tag only)
    static let gcm256RTPAuthOnlyTag = "a866d5910f887463067ceefec45215d4"

    // RFC 7714 16.2.3 "Tagged packet:" (= packet || tag); also 16.2.4
    // "Verifying the following packet:" (Tag Verification succeeds: "Received tag verified.")
    static let gcm256RTPAuthOnlyPacket = "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573a866d5910f887463067ceefec45215d4"

    // ============================================================================
    // RFC 7714 Section 17 — RTCP Test Vectors (common inputs)
    // ============================================================================

    // RFC 7714 Section 17 "The examples in this section are all based upon the same RTCP packet:"
    // KNOWN INCONSISTENCY IN THE RFC TEXT: this preamble packet (81c8000e ... 4e545031 4e545031 ... 0000eb98)
    // is NOT the packet that 17.1-17.4 actually encrypt/tag/verify; those use gcmRTCPPacket below
    // (differs at octets 3, 15, 26, 27). Every computed value in 17.x is consistent only with
    // gcmRTCPPacket. Kept verbatim; do NOT use it as the plaintext for the 17.x vectors. (Not found
    // as a filed erratum in the sources available here.) Only the SSRC (4d617273 "Mars") feeds the IV.
    static let gcmRTCPPreamblePacket = "81c8000e4d6172734e5450314e545031525450200000042a0000eb984c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"

    // RFC 7714 17.1 / 17.3 "Encrypting the following packet:" / "Tagging the following packet:",
    // 17.2 "Verified and decrypted packet:", 17.4 "Verified packet:" — the RTCP packet of all 17.x vectors.
    // CORRECTED value for the Section 17 preamble packet.
    static let gcmRTCPPacket = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"

    // RFC 7714 Section 17 "with 32-bit SRTCP index 000005d4"
    static let gcmSRTCPIndex: UInt32 = 0x0000_05d4

    // RFC 7714 Section 17 IV table, column "SSRC" (ASCII "Mars")
    static let gcmRTCPSSRC: UInt32 = 0x4d61_7273

    // RFC 7714 17.1 "Append the ESRTCP word with the E-flag set" (E=1 || SRTCP index)
    static let gcmSRTCPESRTCPWordEncrypted = "800005d4"

    // RFC 7714 17.3 / 17.4 ESRTCP word with E-flag clear, as the last word of "AAD:" and of
    // "Tagged packet:" (E=0 || SRTCP index)
    static let gcmSRTCPESRTCPWordTagOnly = "000005d4"

    // RFC 7714 Section 17 "Form the IV" row "| Pad |   SSRC    | Pad |  0+SRTCP  |"
    static let gcmRTCPIVInput = "00004d6172730000000005d4"

    // RFC 7714 Section 17 "IV" (= IV input XOR salt; same in 17.1-17.4 "IV:")
    static let gcmRTCPIV = "517524055203726f207170bb"

    // ============================================================================
    // RFC 7714 Section 17.1 — SRTCP AEAD_AES_128_GCM Encryption and Tagging
    // ============================================================================

    // RFC 7714 17.1 "Key:" ("Key size = 128 bits", "Tag size =  16 octets")
    static let gcm128RTCPKey = "000102030405060708090a0b0c0d0e0f"

    // RFC 7714 17.1 "IV:"
    static let gcm128RTCPIV = "517524055203726f207170bb"

    // RFC 7714 17.1 "AAD:" (first 8 octets of the RTCP packet || ESRTCP word with E=1)
    static let gcm128RTCPAAD = "81c8000d4d617273800005d4"

    // RFC 7714 17.1 "PT:" (the RTCP packet after its first 8 octets)
    static let gcm128RTCPPlaintext = "4e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"

    // RFC 7714 17.1 "H:"
    static let gcm128RTCPH = "c6a13b37878f5b826f4f8162a1c8d879"

    // RFC 7714 17.1 "Encrypt the Plaintext": "block # n" with "IV||blk_cntr:", "key_block:",
    // "plain_block:", "cipher_block:"
    static let gcm128RTCPKeystreamBlocks: [(block: Int, counterBlock: String, keyBlock: String, plainBlock: String, cipherBlock: String)] = [
        (block: 0, counterBlock: "517524055203726f207170bb00000002", keyBlock: "2dbd18b4928ee64ef57387462f6b7ab3",
         plainBlock: "4e5450314e545032525450200000042a", cipherBlock: "63e94885dcdab67ca727d7662f6b7e99"),
        (block: 1, counterBlock: "517524055203726f207170bb00000003", keyBlock: "7ff529c720739d4c18db1b1eada0d135",
         plainBlock: "0000e9304c756e61deadbeefdeadbeef", cipherBlock: "7ff5c0f76c06f32dc676a5f1730d6fda"),
        (block: 2, counterBlock: "517524055203726f207170bb00000004", keyBlock: "924d25a9589d8302d51499b4e0147815",
         plainBlock: "deadbeefdeadbeefdeadbeef", cipherBlock: "4ce09b4686303ded0bb9275b"),
    ]

    // RFC 7714 17.1 "Cipher before tag appended"
    static let gcm128RTCPCipher = "63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275b"

    // RFC 7714 17.1 "Compute the GMAC tag": word / "partial hash:" pairs
    static let gcm128RTCPGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "81c8000d4d617273800005d400000000", partialHash: "085d6eb166c555aa62982f630430ec6e"),  // AAD word
        (word: "63e94885dcdab67ca727d7662f6b7e99", partialHash: "8c9221be93466d68bbb16fa0d42b0187"),  // cipher word
        (word: "7ff5c0f76c06f32dc676a5f1730d6fda", partialHash: "221ebb044ec9fd0bf116d7780f198792"),  // cipher word
        (word: "4ce09b4686303ded0bb9275b00000000", partialHash: "50f70b9ca110ab312dce212657328dae"),  // cipher word
        (word: "00000000000000600000000000000160", partialHash: "7296107c9716534371dfc1a30c5ffeb5"),  // length word
    ]

    // RFC 7714 17.1 "GHASH:"
    static let gcm128RTCPGHASH = "7296107c9716534371dfc1a30c5ffeb5"

    // RFC 7714 17.1 "K0:"
    static let gcm128RTCPK0 = "badcb42401d91e6cb47439d14986146b"

    // RFC 7714 17.1 "full GMAC:"
    static let gcm128RTCPTag = "c84aa45896cf4d2fc5abf87245d9eade"

    // RFC 7714 17.1 "Cipher with tag"
    static let gcm128RTCPCipherWithTag = "63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade"

    // RFC 7714 17.1 "Append the ESRTCP word with the E-flag set"
    static let gcm128RTCPCipherWithTagAndESRTCP = "63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4"

    // RFC 7714 17.1 "Encrypted and tagged packet:" (full SRTCP packet = first 8 octets ||
    // cipher || tag || E-flag|SRTCP index; no MKI, no separate auth tag after the index)
    static let gcm128RTCPEncryptedPacket = "81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4"

    // ============================================================================
    // RFC 7714 Section 17.2 — SRTCP AEAD_AES_256_GCM Verification and Decryption
    // ============================================================================

    // NOTE (RFC text typos, no value affected): 17.2 prints "Key size =  16 octets" where it means
    // "Tag size", and a stray "Process the length word" line before "Decrypting the following packet:".

    // RFC 7714 17.2 "Key:" ("Key size = 256 bits")
    static let gcm256RTCPKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    // RFC 7714 17.2 "IV:"
    static let gcm256RTCPIV = "517524055203726f207170bb"

    // RFC 7714 17.2 "Decrypting the following packet:" (full SRTCP packet, E=1)
    static let gcm256RTCPEncryptedPacket = "81c8000d4d617273d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad1d1eb30c4446839f57ff6f6cb26ac3be800005d4"

    // RFC 7714 17.2 "AAD:"
    static let gcm256RTCPAAD = "81c8000d4d617273800005d4"

    // RFC 7714 17.2 "CT:" (ciphertext || tag)
    static let gcm256RTCPCT = "d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be8415f658c61de0476f1b6fad1d1eb30c4446839f57ff6f6cb26ac3be"

    // RFC 7714 17.2 "H:"
    static let gcm256RTCPH = "f29000b62a499fd0a9f39a6add2e7780"

    // RFC 7714 17.2 "Verify the received tag" / "Received tag =" / "full GMAC:"
    static let gcm256RTCPTag = "1d1eb30c4446839f57ff6f6cb26ac3be"

    // RFC 7714 17.2 "Process the AAD" / "Process the cipher" / "Process the length word":
    // word / "partial hash:" pairs (cipher words cover only the ciphertext, not the tag)
    static let gcm256RTCPGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "81c8000d4d617273800005d400000000", partialHash: "3ae5afd36dead5280b18950400176b5b"),  // AAD word
        (word: "d50ae4d1f5ce5d304ba297e47d470c28", partialHash: "e90fab7546f6940781227227ac926ebe"),  // cipher word
        (word: "2c3ece5dbffe0a50a2eaa5c1110555be", partialHash: "9b236807d8b2dab07583adce367aa88f"),  // cipher word
        (word: "8415f658c61de0476f1b6fad00000000", partialHash: "e69313f423a75e3e0b7eb93321700e86"),  // cipher word
        (word: "00000000000000600000000000000160", partialHash: "3a284af2616fdf505faf37eec39fbc8b"),  // length word
    ]

    // RFC 7714 17.2 "GHASH:"
    static let gcm256RTCPGHASH = "3a284af2616fdf505faf37eec39fbc8b"

    // RFC 7714 17.2 "K0:"
    static let gcm256RTCPK0 = "2736f9fe25295ccf0850588271f57f35"

    // RFC 7714 17.2 "Decrypt the cipher": "block # n" with "IV||blk_cntr:", "key_block:",
    // "cipher_block:", "plain_block:"
    static let gcm256RTCPKeystreamBlocks: [(block: Int, counterBlock: String, keyBlock: String, plainBlock: String, cipherBlock: String)] = [
        (block: 0, counterBlock: "517524055203726f207170bb00000002", keyBlock: "9b5eb4e0bb9a0d0219f6c7c47d470802",
         plainBlock: "4e5450314e545032525450200000042a", cipherBlock: "d50ae4d1f5ce5d304ba297e47d470c28"),
        (block: 1, counterBlock: "517524055203726f207170bb00000003", keyBlock: "2c3e276df38b64317c471b2ecfa8eb51",
         plainBlock: "0000e9304c756e61deadbeefdeadbeef", cipherBlock: "2c3ece5dbffe0a50a2eaa5c1110555be"),
        (block: 2, counterBlock: "517524055203726f207170bb00000004", keyBlock: "5ab848b718b05ea8b1b6d1423b743955",
         plainBlock: "deadbeefdeadbeefdeadbeef", cipherBlock: "8415f658c61de0476f1b6fad"),
    ]

    // RFC 7714 17.2 "Verified and decrypted packet:" (= gcmRTCPPacket)
    static let gcm256RTCPDecryptedPacket = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"

    // ============================================================================
    // RFC 7714 Section 17.3 — SRTCP AEAD_AES_128_GCM Tagging Only (E-flag = 0, not encrypted)
    // ============================================================================

    // RFC 7714 17.3 "Key:"
    static let gcm128RTCPAuthOnlyKey = "000102030405060708090a0b0c0d0e0f"

    // RFC 7714 17.3 "IV:"
    static let gcm128RTCPAuthOnlyIV = "517524055203726f207170bb"

    // RFC 7714 17.3 "AAD:" (whole RTCP packet || ESRTCP word with E=0; plaintext empty)
    static let gcm128RTCPAuthOnlyAAD = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef000005d4"

    // RFC 7714 17.3 "Process the AAD" / "Process the length word": word / "partial hash:"
    static let gcm128RTCPAuthOnlyGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "81c8000d4d6172734e5450314e545032", partialHash: "f8dbbe278e06afe17fb4fb2e67f0a22e"),  // AAD word
        (word: "525450200000042a0000e9304c756e61", partialHash: "6ccd900dfd0eb292f68f8a410d0648ec"),  // AAD word
        (word: "deadbeefdeadbeefdeadbeefdeadbeef", partialHash: "6a14be0ea384c6b746235ba955a57ff5"),  // AAD word
        (word: "deadbeef000005d40000000000000000", partialHash: "cc81f14905670a1e37f8bc81a91997cd"),  // AAD word
        (word: "00000000000001c00000000000000000", partialHash: "3ec16d4c3c0e90a59e91be415bd976d8"),  // length word
    ]

    // RFC 7714 17.3 "GHASH:"
    static let gcm128RTCPAuthOnlyGHASH = "3ec16d4c3c0e90a59e91be415bd976d8"

    // RFC 7714 17.3 "K0:"
    static let gcm128RTCPAuthOnlyK0 = "badcb42401d91e6cb47439d14986146b"

    // RFC 7714 17.3 "full GMAC:" / "Cipher with tag"
    static let gcm128RTCPAuthOnlyTag = "841dd9683dd78ec92ae58790125f62b3"

    // RFC 7714 17.3 "Tagged packet:" (RTCP packet || tag || E=0|SRTCP index)
    static let gcm128RTCPAuthOnlyPacket = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef841dd9683dd78ec92ae58790125f62b3000005d4"

    // ============================================================================
    // RFC 7714 Section 17.4 — SRTCP AEAD_AES_256_GCM Tag Verification (E-flag = 0)
    // ============================================================================

    // NOTE (RFC text typos, no value affected): 17.4 also prints "Key size =  16 octets" for the tag
    // size and a stray "Process the length word" line.

    // RFC 7714 17.4 "Key:"
    static let gcm256RTCPAuthOnlyKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    // RFC 7714 17.4 "IV:"
    static let gcm256RTCPAuthOnlyIV = "517524055203726f207170bb"

    // RFC 7714 17.4 "Verifying the following packet:" (RTCP packet || tag || E=0|SRTCP index)
    static let gcm256RTCPAuthOnlyPacket = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef91db4afbfeee5a978fab4393ed2615fe000005d4"

    // RFC 7714 17.4 "AAD:"
    static let gcm256RTCPAuthOnlyAAD = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef000005d4"

    // RFC 7714 17.4 "CT:" / "Received tag =" / "full GMAC:" (cipher = tag only)
    static let gcm256RTCPAuthOnlyTag = "91db4afbfeee5a978fab4393ed2615fe"

    // RFC 7714 17.4 "Process the AAD" / "Process the length word": word / "partial hash:"
    static let gcm256RTCPAuthOnlyGHASHSteps: [(word: String, partialHash: String)] = [
        (word: "81c8000d4d6172734e5450314e545032", partialHash: "7bc665c71676a5a5f663b3229af4b85c"),  // AAD word
        (word: "525450200000042a0000e9304c756e61", partialHash: "34ed77752703ab7d69f44237910e3bc0"),  // AAD word
        (word: "deadbeefdeadbeefdeadbeefdeadbeef", partialHash: "74a59f1a99282344d64ab1c8a2be6cf8"),  // AAD word
        (word: "deadbeef000005d40000000000000000", partialHash: "126335c0baa7ab1b79416ceeb9f7a518"),  // AAD word
        (word: "00000000000001c00000000000000000", partialHash: "b6edb305dbc7065887fb1b119cd36acb"),  // length word
    ]

    // RFC 7714 17.4 "GHASH:"
    static let gcm256RTCPAuthOnlyGHASH = "b6edb305dbc7065887fb1b119cd36acb"

    // RFC 7714 17.4 "K0:"
    static let gcm256RTCPAuthOnlyK0 = "2736f9fe25295ccf0850588271f57f35"

    // RFC 7714 17.4 "Verified packet:" (= gcmRTCPPacket)
    static let gcm256RTCPAuthOnlyVerifiedPacket = "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"
}
