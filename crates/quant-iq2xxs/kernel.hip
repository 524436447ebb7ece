// IQ2_XXS dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The tables
// qf_iq2xxs_grid and qf_ksigns_iq2xs (quant-tables' fragments) precede this file.
//
// Super-block (66 bytes, 256 values): d (f16), then eight pairs of u32 (aux0, aux1) at byte
// 2 + 8ib, one per 32-value sub-block ib. Byte l of aux0 indexes the grid for values 8l..8l+7
// of the sub-block (value j = byte j of the 64-bit entry); bits 7l..7l+6 of aux1 index the
// sign patterns; bits 28..31 of aux1 are the scale s. ggml computes, rounding each operation:
//     db = (d * (0.5 + s)) * 0.25;  y = db * grid[j], negated where sign bit j is set
// The pre-pass computes the 8 db of a block once. A grid magnitude (8, 25 or 43) is a byte
// below 2^7, converted exactly by the magic-number trick. ggml's sign is a sign flip (its
// compiled `* -1.f`, NaN signs included), done here on the bits.
#include "qf_portability.h"

#ifndef IQ2_XXS_BPG  // overridable for tuning experiments (-DIQ2_XXS_BPG=...)
#define IQ2_XXS_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif


// Shared copies of the tables: the grid as 32-bit halves (entry i = words 2i, 2i + 1).
__shared__ uint32_t iq2_xxs_s_grid[2u * 256u];
__shared__ uint8_t iq2_xxs_s_signs[128];

// v with its sign flipped when bit 0 of `neg` is set.
QF_DEVICE float iq2_xxs_signed(float v, uint32_t neg) {
    return qf_u32_as_f32(qf_f32_as_u32(v) ^ ((neg & 1u) << 31));
}

struct iq2_xxs_block {
    static constexpr uint32_t BB = 66u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = IQ2_XXS_BPG;
    static constexpr uint32_t NP = 8u;  // db of each of the 8 sub-blocks
    QF_DEVICE static void init() {
        qf_copy_table_halves<256u>(iq2_xxs_s_grid, qf_iq2xxs_grid);
        qf_copy_table<128u>(iq2_xxs_s_signs, qf_ksigns_iq2xs);
    }
    // Pre-pass value k: db of sub-block k = d * (0.5f + (aux1 >> 28)) * 0.25f.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t aux1 = qf_ld_u32(s8, base + 6u + 8u * k);
        const float d = qf_ld_f16(s8, base);
        return QF_MUL(QF_MUL(d, QF_ADD(0.5f, (float)(aux1 >> 28))), 0.25f);
    }
    // Values j .. j+N-1 (N = 4 or 8, j % N == 0) of the block: all from one grid entry.
    template <uint32_t N>
    QF_DEVICE static void decode(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                 float* v) {
        const uint32_t ib = j >> 5;         // sub-block, 0..7
        const uint32_t l = (j >> 3) & 3u;   // group of 8 in the sub-block
        const uint32_t h = (j >> 2) & 1u;   // which half of the group's 8 values (N = 4)
        const uint32_t aux0 = qf_ld_u32(s8, base + 2u + 8u * ib);
        const uint32_t aux1 = qf_ld_u32(s8, base + 6u + 8u * ib);
        const uint32_t gi = 2u * ((aux0 >> (8u * l)) & 255u);
        const uint32_t signs = (uint32_t)iq2_xxs_s_signs[(aux1 >> (7u * l)) & 127u];
        const float db = p[ib];
#pragma unroll
        for (uint32_t k = 0; k < N / 4u; ++k) {
            const uint32_t hk = N == 8u ? k : h;
            const uint32_t g = iq2_xxs_s_grid[gi + hk];
            const uint32_t sg = signs >> (4u * hk);
            v[4u * k + 0u] = iq2_xxs_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<0u>(g))), sg);
            v[4u * k + 1u] = iq2_xxs_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<1u>(g))), sg >> 1);
            v[4u * k + 2u] = iq2_xxs_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<2u>(g))), sg >> 2);
            v[4u * k + 3u] = iq2_xxs_signed(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<3u>(g))), sg >> 3);
        }
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        decode<4u>(s8, base, p, j, v);
    }
    QF_DEVICE static void decode8(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        decode<8u>(s8, base, p, j, v);
    }
};

QF_DEQUANT_ENTRIES(iq2_xxs, iq2_xxs_block)
