// Q2_0 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (18 bytes, 64 values): d (f16, little-endian) then qs[16], four 2-bit quants per byte,
// lowest bits first (value j is bits 2 (j % 4) .. 2 (j % 4) + 1 of qs[j / 4]). ggml computes
// y[j] = (float)((int)q - 1) * d with one rounding. The four quants of one byte are spread into
// the four bytes of a word, and the magic-number trick turns each into (float)(q - 1) exactly:
// (2^23 + q) - (2^23 + 1).
#include "qf_portability.h"

#ifndef Q2_0_BPG  // overridable for tuning experiments (-DQ2_0_BPG=...)
#define Q2_0_BPG 128u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q2_0_block {
    static constexpr uint32_t BB = 18u;
    static constexpr uint32_t QK = 64u;
    static constexpr uint32_t BPG = Q2_0_BPG;
    static constexpr uint32_t NP = 1u;
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        // Values j .. j+3 are the whole byte qs[j / 4] (j is a multiple of 4).
        const uint32_t b = qf_ld_u32(s8, base + 2u + (j >> 2)) & 0xFFu;
        // Byte i of q = bits 2i, 2i+1 of b.
        const uint32_t q = (b | (b << 6) | (b << 12) | (b << 18)) & 0x03030303u;
        // ggml: ((int)q - 1) * d
        v[0] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<0u>(q)), d);
        v[1] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<1u>(q)), d);
        v[2] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<2u>(q)), d);
        v[3] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<3u>(q)), d);
    }
};

QF_DEQUANT_ENTRIES(q2_0, q2_0_block)
