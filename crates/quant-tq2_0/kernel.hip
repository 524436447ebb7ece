// TQ2_0 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (66 bytes, 256 values): qs[64] then d (f16, little-endian). Byte qs[32h + m] holds the
// 2-bit quants of values 128h + 32l + m in its bits 2l, 2l+1 (l in 0..4). ggml computes
// y = (float)(q - 1) * d with one rounding. Four consecutive values j..j+3 share h and l and
// come from four consecutive bytes; each 2-bit quant is a byte of a word below 2^7, so the
// magic-number trick gives (float)(q - 1) exactly.
#include "qf_portability.h"

#ifndef TQ2_0_BPG  // overridable for tuning experiments (-DTQ2_0_BPG=...)
#define TQ2_0_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct tq2_0_block {
    static constexpr uint32_t BB = 66u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = TQ2_0_BPG;
    static constexpr uint32_t NP = 1u;
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base + 64u);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        const uint32_t h = j >> 7;          // half, 0..1
        const uint32_t l = (j >> 5) & 3u;   // bit pair, 0..3
        const uint32_t m = j & 31u;         // byte within the half, a multiple of 4
        const uint32_t q = (qf_ld_u32(s8, base + 32u * h + m) >> (2u * l)) & 0x03030303u;
        // ggml: (float)(q - 1) * d
        v[0] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<0u>(q)), d);
        v[1] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<1u>(q)), d);
        v[2] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<2u>(q)), d);
        v[3] = QF_MUL(qf_magic_minus<1u>(qf_magic_byte<3u>(q)), d);
    }
};

QF_DEQUANT_ENTRIES(tq2_0, tq2_0_block)
