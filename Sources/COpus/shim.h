#ifndef VOX_COPUS_SHIM_H
#define VOX_COPUS_SHIM_H
#include <opus/opus.h>

// opus_encoder_ctl/opus_decoder_ctl are variadic and the OPUS_SET_* requests are
// macros: neither imports into Swift.
static inline int vox_opus_encoder_set_bitrate(OpusEncoder *e, opus_int32 bps) {
    return opus_encoder_ctl(e, OPUS_SET_BITRATE(bps));
}
static inline int vox_opus_encoder_set_complexity(OpusEncoder *e, opus_int32 c) {
    return opus_encoder_ctl(e, OPUS_SET_COMPLEXITY(c));
}
static inline int vox_opus_encoder_set_inband_fec(OpusEncoder *e, opus_int32 on) {
    return opus_encoder_ctl(e, OPUS_SET_INBAND_FEC(on));
}
static inline int vox_opus_encoder_set_packet_loss_perc(OpusEncoder *e, opus_int32 pct) {
    return opus_encoder_ctl(e, OPUS_SET_PACKET_LOSS_PERC(pct));
}
#endif
