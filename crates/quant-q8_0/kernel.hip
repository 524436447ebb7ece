// Q8_0 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (34 bytes, 32 values): d (f16, little-endian) then qs[32] (int8). ggml computes
// y[j] = (float)qs[j] * d with one rounding. The int8 becomes a float exactly through the
// magic-number trick: byte ^ 0x80 is q + 128 in 0..255, and (2^23 + (q + 128)) - (2^23 + 128)
// is q exactly.
#include "qf_portability.h"

#ifndef Q8_0_BPG  // overridable for tuning experiments (-DQ8_0_BPG=...)
#define Q8_0_BPG 256u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q8_0_block {
    static constexpr uint32_t BB = 34u;
    static constexpr uint32_t QK = 32u;
    static constexpr uint32_t BPG = Q8_0_BPG;
    static constexpr uint32_t NP = 1u;
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        const uint32_t q = qf_ld_u32(s8, base + 2u + j) ^ 0x80808080u;
        v[0] = QF_MUL(qf_magic_minus<128u>(qf_magic_byte<0u>(q)), d);
        v[1] = QF_MUL(qf_magic_minus<128u>(qf_magic_byte<1u>(q)), d);
        v[2] = QF_MUL(qf_magic_minus<128u>(qf_magic_byte<2u>(q)), d);
        v[3] = QF_MUL(qf_magic_minus<128u>(qf_magic_byte<3u>(q)), d);
    }
};

QF_DEQUANT_ENTRIES(q8_0, q8_0_block)
