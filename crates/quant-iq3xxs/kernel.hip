// IQ3_XXS dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The tables
// qf_iq3xxs_grid and qf_ksigns_iq2xs (generated, from quant-tables) precede this file in the
// kernel source; init() copies them into shared memory once per launch.
//
// Super-block (98 bytes, 256 values): d (f16), qs[64] (grid indices: qs[t] is the grid entry of
// values 4t..4t+3), then eight little-endian u32 aux32[ib], one per 32-value sub-block: bits
// 28..31 the scale s, bits 7l..7l+6 the index into ksigns_iq2xs of the signs of values
// 32ib + 8l .. 32ib + 8l + 7. ggml computes, in this order and with a rounding after each
// operation:
//     db = (d * (0.5f + (float)s)) * 0.5f;  y = db * (float)grid, negated where the sign bit is set
// (ggml's `* (sign ? -1.f : 1.f)`, which its compiler turns into a negation: the sign bit of the
// product is flipped). The pre-pass computes db of the 8 sub-blocks once per block. A grid value
// is a byte below 2^7, so the magic-number trick converts it exactly.
#include "qf_portability.h"

#ifndef IQ3_XXS_BPG  // overridable for tuning experiments (-DIQ3_XXS_BPG=...)
#define IQ3_XXS_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif


// Shared copies of the tables, filled by init().
__shared__ uint32_t iq3_xxs_s_grid[256];
__shared__ uint8_t iq3_xxs_s_ksigns[128];

struct iq3_xxs_block {
    static constexpr uint32_t BB = 98u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = IQ3_XXS_BPG;
    static constexpr uint32_t NP = 8u;  // db of each of the 8 sub-blocks
    QF_DEVICE static void init() {
        qf_copy_table<256u>(iq3_xxs_s_grid, qf_iq3xxs_grid);
        qf_copy_table<128u>(iq3_xxs_s_ksigns, qf_ksigns_iq2xs);
    }
    // Pre-pass value k: db of sub-block k.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t aux32 = qf_ld_u32(s8, base + 66u + 4u * k);
        const float d = qf_ld_f16(s8, base);
        return QF_MUL(QF_MUL(d, QF_ADD(0.5f, (float)(aux32 >> 28))), 0.5f);
    }
    // The four values 4h .. 4h+3 of a group of eight: grid entry `grid`, sign bits 4h .. 4h+3
    // of the group's sign byte in bits 0..3 of `signs`.
    // ggml: db * grid[k], negated where the sign bit is set
    QF_DEVICE static void four(float db, uint32_t grid, uint32_t signs, float* v) {
        v[0] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<0u>(grid)))) ^
                             ((signs & 1u) << 31));
        v[1] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<1u>(grid)))) ^
                             (((signs >> 1) & 1u) << 31));
        v[2] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<2u>(grid)))) ^
                             (((signs >> 2) & 1u) << 31));
        v[3] = qf_u32_as_f32(qf_f32_as_u32(QF_MUL(db, qf_magic_minus<0u>(qf_magic_byte<3u>(grid)))) ^
                             (((signs >> 3) & 1u) << 31));
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const uint32_t ib = j >> 5;        // sub-block, 0..7
        const uint32_t l = (j >> 3) & 3u;  // group of eight, 0..3
        const float db = p[ib];
        const uint32_t grid = iq3_xxs_s_grid[s8[base + 2u + (j >> 2)]];
        const uint32_t aux32 = qf_ld_u32(s8, base + 66u + 4u * ib);
        // The sign bits of values j..j+3: bits 0..3 or 4..7 of the group's sign byte.
        const uint32_t signs = (uint32_t)iq3_xxs_s_ksigns[(aux32 >> (7u * l)) & 127u] >> (j & 4u);
        four(db, grid, signs, v);
    }
    // Values j .. j+7 (j % 8 == 0): one group of eight, whose db, sign byte and two grid indices
    // (qs[j/4], qs[j/4 + 1]: one aligned u16, as base and j/4 are even) are read once; each value
    // is the same product and sign flip as decode4's.
    QF_DEVICE static void decode8(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const uint32_t ib = j >> 5;        // sub-block, 0..7
        const uint32_t l = (j >> 3) & 3u;  // group of eight, 0..3
        const float db = p[ib];
        const uint32_t qs2 = ((const uint16_t*)s8)[(base + 2u + (j >> 2)) >> 1];
        const uint32_t aux32 = qf_ld_u32(s8, base + 66u + 4u * ib);
        const uint32_t signs = (uint32_t)iq3_xxs_s_ksigns[(aux32 >> (7u * l)) & 127u];
        four(db, iq3_xxs_s_grid[qs2 & 0xFFu], signs, v);
        four(db, iq3_xxs_s_grid[qs2 >> 8], signs >> 4, v + 4);
    }
};

QF_DEQUANT_ENTRIES(iq3_xxs, iq3_xxs_block)
